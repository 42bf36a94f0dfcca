import pytest
import torch
import torch.nn.functional as F

from metric_runner.utils.linear_cross_entropy import linear_cross_entropy
from tests.helpers import assert_close


def inputs(dtype, num_rows=6, num_classes=4, dim=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    query = (3 * torch.randn(num_rows, dim, generator=generator)).to(dtype).requires_grad_(True)
    ref = torch.randn(num_classes, dim, generator=generator).to(dtype).requires_grad_(True)
    targets = torch.randint(num_classes, (num_rows,), generator=generator)
    row_weights = torch.rand(num_rows, generator=generator).to(dtype)
    return query, ref, targets, row_weights


def test_matches_cross_entropy_of_the_product(dtype):
    query, ref, targets, row_weights = inputs(dtype)
    ours = linear_cross_entropy(query, ref, targets)
    grads = torch.autograd.grad((ours * row_weights).sum(), [query, ref])
    expected = F.cross_entropy(query @ ref.t(), targets, reduction="none")
    expected_grads = torch.autograd.grad((expected * row_weights).sum(), [query, ref])
    assert ours.dtype == dtype
    assert_close(ours, expected, dtype)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, dtype)


def test_gradients_pass_gradcheck_with_one_tensor_on_both_sides():
    query, _, targets, _ = inputs(torch.float64, num_classes=6)
    # Each row's target is a column of the batch itself, as in InstanceLoss.
    assert torch.autograd.gradcheck(lambda x: linear_cross_entropy(2 * x, x, targets), (query,))


def test_a_retained_graph_gives_the_same_gradients_twice():
    query, ref, targets, _ = inputs(torch.float64)
    losses = linear_cross_entropy(query, ref, targets).sum()
    first = torch.autograd.grad(losses, [query, ref], retain_graph=True)
    second = torch.autograd.grad(losses, [query, ref])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_float16_inputs_give_float16_losses_close_to_float32():
    query, ref, targets, _ = inputs(torch.float32)
    query, ref = 40 * query.detach(), ref.detach()
    expected = F.cross_entropy(query @ ref.t(), targets, reduction="none")
    ours = linear_cross_entropy(query.half(), ref.half(), targets)
    assert ours.dtype == torch.float16
    torch.testing.assert_close(ours.float(), expected, rtol=2e-2, atol=1.0)


@pytest.mark.parametrize("target", [-1, 4])
def test_out_of_range_target_is_an_error(target):
    query, ref, targets, _ = inputs(torch.float64)
    targets[0] = target
    with pytest.raises((IndexError, RuntimeError)):
        linear_cross_entropy(query, ref, targets)
