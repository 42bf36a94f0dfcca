import pytest
import torch

from metric_runner.distances.l2_normalize import l2_normalize_rows


def reference_normalize(x):
    return torch.nn.functional.normalize(x, p=2, dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_value_and_gradient_equal_functional_normalize(dtype):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(7, 5, generator=generator, dtype=dtype)
    x[2] = 0  # a zero row: the clamped branch
    x[4] *= 1e-14  # below eps: the norm is the constant eps there
    upstream = torch.randn(7, 5, generator=generator, dtype=dtype)
    ours = x.clone().requires_grad_(True)
    theirs = x.clone().requires_grad_(True)
    (l2_normalize_rows(ours) * upstream).sum().backward()
    (reference_normalize(theirs) * upstream).sum().backward()
    torch.testing.assert_close(l2_normalize_rows(x), reference_normalize(x))
    torch.testing.assert_close(ours.grad, theirs.grad)


def test_gradcheck_float64():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(l2_normalize_rows, (x,))


def test_hand_computed_row():
    x = torch.tensor([[3.0, 4.0]], requires_grad=True)
    y = l2_normalize_rows(x)
    torch.testing.assert_close(y, torch.tensor([[0.6, 0.8]]))
    y[0, 0].backward()
    # d(x0/|x|)/dx = (1/|x|) * (e0 - y0 * y) = (1/5) * ([1, 0] - 0.6 * [0.6, 0.8])
    torch.testing.assert_close(x.grad, torch.tensor([[0.128, -0.096]]))
