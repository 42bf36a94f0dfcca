"""Shared checks for the regularizer tests."""

import torch

from tests.helpers import assert_close

# Rows (3, 4), (1, 0), (0, -2): L2 norms 5, 1, 2; L1 norms 7, 1, 2; row sums 7, 1, -2.
ROWS_3X2 = [[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]]


def rows_3x2(dtype=torch.float64):
    return torch.tensor(ROWS_3X2, dtype=dtype)


def random_weights(num_rows=12, dim=6, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(num_rows, dim, generator=generator, dtype=torch.float64) * 1.5).to(dtype)


def value_and_grad(regularizer, x):
    x = x.detach().clone().requires_grad_(True)
    value = regularizer(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def assert_matches_pml(ours, theirs, x, dtype):
    our_value, our_grad = value_and_grad(ours, x)
    pml_value, pml_grad = value_and_grad(theirs, x)
    assert our_value.dtype == dtype
    assert_close(our_value, pml_value, dtype)
    assert_close(our_grad, pml_grad, dtype, scale=10)


def assert_float32_agrees_with_float64(regularizer_factory, x):
    value64, grad64 = value_and_grad(regularizer_factory(), x.double())
    value32, grad32 = value_and_grad(regularizer_factory(), x.float())
    assert_close(value32, value64, torch.float32, scale=10)
    assert_close(grad32, grad64, torch.float32, scale=10)
