import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.losses import DynamicSoftMarginLoss
from tests.losses import tuple_loss_helpers as h

TINY_EMBEDDINGS = [[1.0, 0.0], [0.9, 0.5], [0.2, 1.3], [-0.6, 0.8], [-1.0, -0.4], [0.3, -1.0]]
TINY_LABELS = [0, 0, 0, 1, 1, 2]


def tiny_batch():
    return torch.tensor(TINY_EMBEDDINGS, dtype=torch.float64), torch.tensor(TINY_LABELS)


def unit(v):
    norm = math.hypot(*v)
    return [a / norm for a in v]


def tiny_triplet_deltas(embeddings):
    x, y = [unit(v) for v in embeddings], TINY_LABELS
    return [
        math.dist(x[a], x[p]) - math.dist(x[a], x[n])
        for a in range(len(x))
        for p in range(len(x))
        for n in range(len(x))
        if a != p and y[a] == y[p] and y[n] != y[a]
    ]


def hand_step(deltas, hist, min_val, num_bins, momentum):
    """One call: blend the batch's interpolated counts into `hist`, normalize, and return
    (mean of CDF(lower node of Δ) · Δ, new hist)."""
    width = -2 * min_val / num_bins
    counts = [0.0] * num_bins
    for d in deltas:
        position = (d - min_val) / width
        lower = math.floor(position)
        counts[lower] += 1 - (position - lower)
        counts[lower + 1] += position - lower
    blended = [(1 - momentum) * old + momentum * c for old, c in zip(hist, counts)]
    hist = [v / sum(blended) for v in blended]
    cdf = [sum(hist[: b + 1]) for b in range(num_bins)]
    loss = sum(cdf[math.floor((d - min_val) / width)] * d for d in deltas) / len(deltas)
    return loss, hist


def test_hand_computed_values_over_two_calls():
    embeddings, labels = tiny_batch()
    loss_fn = DynamicSoftMarginLoss(min_val=-2.5, num_bins=8, momentum=0.3).double()
    hist = [0.0] * 8
    for scale in (1.0, 0.5):
        moved = embeddings + scale * torch.tensor(
            [[0.0, 0.3]] * 6, dtype=torch.float64
        ) * torch.arange(6).unsqueeze(1)
        expected, hist = hand_step(tiny_triplet_deltas(moved.tolist()), hist, -2.5, 8, 0.3)
        assert loss_fn(moved, labels).item() == pytest.approx(expected, rel=1e-12)
        assert loss_fn.hist_.tolist() == pytest.approx(hist, rel=1e-12)


@pytest.mark.parametrize("ref_rows", [6, 4])
def test_hand_computed_value_without_labels(ref_rows):
    # Row i of each view is a matching pair; its negative is the closest other row or column.
    # Extra rows of the larger view only serve as negatives.
    embeddings, _ = tiny_batch()
    ref = (embeddings.flip(1) + 0.2)[:ref_rows]
    x, r = [unit(v) for v in embeddings.tolist()], [unit(v) for v in ref.tolist()]
    deltas = []
    for i in range(min(len(x), len(r))):
        closest = min(
            min(math.dist(x[i], r[j]) for j in range(len(r)) if j != i),
            min(math.dist(x[j], r[i]) for j in range(len(x)) if j != i),
        )
        deltas.append(math.dist(x[i], r[i]) - closest)
    expected, _ = hand_step(deltas, [0.0] * 10, -2.0, 10, 0.01)
    assert DynamicSoftMarginLoss()(embeddings, ref_emb=ref).item() == pytest.approx(
        expected, rel=1e-12
    )


def test_gradient_without_labels_matches_finite_differences():
    # momentum=1 makes each call independent of the stored histogram.
    embeddings, _ = tiny_batch()
    ref = embeddings.flip(1) + 0.2
    loss_fn = DynamicSoftMarginLoss(min_val=-2.5, num_bins=8, momentum=1.0).double()
    inputs = (embeddings.clone().requires_grad_(True), ref.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(lambda x, y: loss_fn(x, ref_emb=y), inputs)


def pml_pair(**kwargs):
    return h.build_pair(DynamicSoftMarginLoss, **kwargs)


def two_calls(loss, embeddings, labels, indices_tuple=None, ref=None):
    """The second of two calls (the first fills the histogram), with its gradients."""
    h.value_and_grads(loss, embeddings * 1.1, labels, indices_tuple, ref)
    if loss.hist_.requires_grad:  # PML keeps the graph in its histogram
        loss.hist_ = loss.hist_.detach()
    return h.value_and_grads(loss, embeddings, labels, indices_tuple, ref)


RECIPES = [
    (lambda lib: {}, {"momentum": 0.3}),
    (
        lambda lib: {"distance": lib.distances.LpDistance(power=2)},
        {"min_val": -4.5, "num_bins": 12},
    ),
]


@pytest.mark.parametrize("recipe, kwargs", RECIPES)
@pytest.mark.parametrize("indices", [None, h.mined_pairs, h.mined_triplets])
def test_matches_pml_over_two_calls(pml, dtype, recipe, kwargs, indices):
    ours, theirs = pml_pair(components=recipe, **kwargs)
    embeddings, labels = h.data(dtype)
    indices_tuple = None if indices is None else indices(labels)
    our_value, our_grad, _ = two_calls(ours, embeddings, labels, indices_tuple)
    pml_value, pml_grad, _ = two_calls(theirs, embeddings, labels, indices_tuple)
    h.assert_close(our_value, pml_value, dtype, scale=10)
    h.assert_close(our_grad, pml_grad, dtype, scale=10)
    h.assert_close(ours.hist_, theirs.hist_.to(ours.hist_.dtype), torch.float32)


def test_matches_pml_with_ref_emb(pml, dtype):
    ours, theirs = pml_pair(momentum=0.2)
    embeddings, labels = h.data(dtype)
    ref = h.ref_data(dtype)
    our_value, our_grad, our_ref_grad = h.value_and_grads(ours, embeddings, labels, None, ref)
    pml_value, pml_grad, pml_ref_grad = h.value_and_grads(theirs, embeddings, labels, None, ref)
    h.assert_close(our_value, pml_value, dtype, scale=10)
    h.assert_close(our_grad, pml_grad, dtype, scale=10)
    h.assert_close(our_ref_grad, pml_ref_grad, dtype, scale=10)


@pytest.mark.parametrize("with_ref", [False, True])
def test_value_without_labels_matches_pml(pml, with_ref):
    # PML cannot backpropagate through this path, so only the values are compared.
    ours, theirs = pml_pair(min_val=-2.5, num_bins=8)
    embeddings, _ = h.data(torch.float64)
    ref = embeddings.flip(0) + 0.1 if with_ref else None
    h.assert_close(
        ours(embeddings, ref_emb=ref), theirs(embeddings, ref_emb=ref).detach(), torch.float64
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(DynamicSoftMarginLoss)
    ours, theirs = pml_pair()
    assert ours.delta == theirs.delta and ours.hist_.tolist() == theirs.hist_.tolist()


def test_histogram_is_saved_with_the_state_dict():
    embeddings, labels = tiny_batch()
    loss_fn = DynamicSoftMarginLoss()
    loss_fn(embeddings, labels)
    restored = DynamicSoftMarginLoss()
    restored.load_state_dict(loss_fn.state_dict())
    assert torch.equal(restored.hist_, loss_fn.hist_) and restored.hist_.sum() == pytest.approx(1)
    assert not loss_fn.hist_.requires_grad


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: DynamicSoftMarginLoss(momentum=0.3))


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: DynamicSoftMarginLoss(momentum=0.3))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: DynamicSoftMarginLoss(), h.mined_pairs)


def test_differences_beyond_the_histogram_go_to_its_end_nodes():
    # Squared distances reach 4, beyond the default range [-2, 2]: PML fails there.
    embeddings, labels = tiny_batch()
    emb = embeddings.detach().clone().requires_grad_(True)
    loss = DynamicSoftMarginLoss(distance=LpDistance(power=2))(emb, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()


def test_rejects_other_distances_and_bad_arguments():
    with pytest.raises(ValueError, match="LpDistance"):
        DynamicSoftMarginLoss(distance=CosineSimilarity())
    with pytest.raises(ValueError, match="LpDistance"):
        DynamicSoftMarginLoss(distance=LpDistance(p=1))
    with pytest.raises(ValueError, match="num_bins >= 2"):
        DynamicSoftMarginLoss(num_bins=1)


def test_mined_triplets_are_used_without_labels():
    embeddings, labels = tiny_batch()
    triplets = (torch.tensor([0, 0, 3]), torch.tensor([1, 2, 4]), torch.tensor([3, 5, 1]))
    with_labels = DynamicSoftMarginLoss()(embeddings, labels, triplets)
    assert DynamicSoftMarginLoss()(embeddings, None, triplets).item() == pytest.approx(
        with_labels.item()
    )
