"""Loss dicts for the reducer tests: six losses over a batch of six embeddings, given as element,
pair and triplet losses with the same anchors."""

import torch

LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
LOSS_VALUES = [0.0, 1.0, 2.0, 3.0, 0.5, 4.0]
ANCHORS = torch.tensor([0, 0, 1, 3, 3, 5])
POSITIVES = torch.tensor([1, 1, 0, 2, 2, 4])
NEGATIVES = torch.tensor([2, 4, 3, 0, 5, 1])
INDICES = {
    "element": ANCHORS,
    "pos_pair": (ANCHORS, POSITIVES),
    "neg_pair": (ANCHORS, NEGATIVES),
    "triplet": (ANCHORS, POSITIVES, NEGATIVES),
    "already_reduced": None,
}
REDUCED_TYPES = ["element", "pos_pair", "neg_pair", "triplet"]


def embeddings(dtype=torch.float32):
    return (
        torch.randn(6, 3, generator=torch.Generator().manual_seed(0)).to(dtype).requires_grad_(True)
    )


def losses(values=LOSS_VALUES, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype, requires_grad=True)


def loss_dict(loss_tensor, reduction_type, indices=None, name="loss", **extra):
    """One named sub-loss; `indices` default to the shared tuples of `reduction_type`."""
    indices = INDICES[reduction_type] if indices is None else indices
    return {
        name: {"losses": loss_tensor, "indices": indices, "reduction_type": reduction_type, **extra}
    }


def reduce_with_grad(reducer, reduction_type, values=LOSS_VALUES, dtype=torch.float32, **extra):
    """(reduced value, gradient w.r.t. the losses)."""
    loss_tensor = losses(values, dtype)
    reduced = reducer(loss_dict(loss_tensor, reduction_type, **extra), embeddings(dtype), LABELS)
    (grad,) = torch.autograd.grad(reduced, loss_tensor, allow_unused=True)
    return reduced.detach(), torch.zeros_like(loss_tensor) if grad is None else grad


def assert_matches_pml(
    ours, theirs, reduction_type, dtype=torch.float32, values=LOSS_VALUES, **extra
):
    our_value, our_grad = reduce_with_grad(ours, reduction_type, values, dtype, **extra)
    pml_value, pml_grad = reduce_with_grad(theirs, reduction_type, values, dtype, **extra)
    torch.testing.assert_close(our_value, pml_value)
    torch.testing.assert_close(our_grad, pml_grad)


def assert_empty_losses_give_zero_with_backward(reducer, reduction_type):
    empty = torch.zeros(0, requires_grad=True)
    empty_index = torch.zeros(0, dtype=torch.long)
    indices = (
        empty_index
        if reduction_type == "element"
        else (empty_index,) * (3 if reduction_type == "triplet" else 2)
    )
    emb = embeddings()
    reduced = reducer(loss_dict(empty, reduction_type, indices), emb, LABELS)
    assert reduced.item() == 0
    reduced.backward()
    assert torch.equal(emb.grad, torch.zeros_like(emb))
