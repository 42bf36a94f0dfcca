import pytest
import torch

from metric_runner.reducers import AvgNonZeroReducer
from metric_runner.regularizers import ZeroMeanRegularizer
from tests.regularizers.regularizer_helpers import (
    assert_float32_agrees_with_float64,
    assert_matches_pml,
    random_weights,
    rows_3x2,
    value_and_grad,
)


def test_mean_absolute_row_sum_by_hand():
    value, grad = value_and_grad(ZeroMeanRegularizer(), rows_3x2())
    assert value.item() == pytest.approx((7 + 1 + 2) / 3)
    # d|sum_j x_ij| / dx_ij = sign(sum_j x_ij), over 3 rows.
    expected_grad = torch.tensor([[1, 1], [1, 1], [-1, -1]], dtype=torch.float64) / 3
    torch.testing.assert_close(grad, expected_grad)


def test_zero_mean_rows_give_zero():
    rows = torch.tensor([[1.0, -1.0, 0.0], [2.0, 2.0, -4.0]])
    assert ZeroMeanRegularizer()(rows).item() == 0


def test_float32_agrees_with_float64():
    assert_float32_agrees_with_float64(ZeroMeanRegularizer, random_weights())


def test_matches_pml(pml_regularizers, dtype):
    x = random_weights(dtype=dtype)
    assert_matches_pml(ZeroMeanRegularizer(), pml_regularizers.ZeroMeanRegularizer(), x, dtype)


def test_matches_pml_with_another_reducer(pml_regularizers, pml_reducers, dtype):
    ours = ZeroMeanRegularizer(reducer=AvgNonZeroReducer())
    theirs = pml_regularizers.ZeroMeanRegularizer(reducer=pml_reducers.AvgNonZeroReducer())
    assert_matches_pml(ours, theirs, random_weights(dtype=dtype), dtype)
