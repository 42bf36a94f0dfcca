import pytest
import torch

from metric_runner.reducers import AvgNonZeroReducer
from tests.reducers.reducer_helpers import (
    REDUCED_TYPES,
    assert_empty_losses_give_zero_with_backward,
    assert_matches_pml,
    reduce_with_grad,
)


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_mean_over_positive_losses_by_hand(dtype, reduction_type):
    # Five of the six losses (0, 1, 2, 3, .5, 4) are positive.
    value, grad = reduce_with_grad(AvgNonZeroReducer(), reduction_type, dtype=dtype)
    assert value.item() == pytest.approx(10.5 / 5)
    torch.testing.assert_close(grad, torch.tensor([0, 1, 1, 1, 1, 1], dtype=dtype) / 5)


def test_all_zero_losses_give_zero_with_zero_gradient():
    value, grad = reduce_with_grad(AvgNonZeroReducer(), "element", values=[0.0] * 6)
    assert value.item() == 0
    torch.testing.assert_close(grad, torch.zeros(6))


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_empty_losses_give_zero(reduction_type):
    assert_empty_losses_give_zero_with_backward(AvgNonZeroReducer(), reduction_type)


def test_counts_positive_losses_in_stats():
    reducer = AvgNonZeroReducer(collect_stats=True)
    reduce_with_grad(reducer, "pos_pair", values=[0.0, -1.0, 2.0, 0.0, 3.0, 0.0])
    assert (reducer.num_past_filter, reducer.num_above_low, reducer.losses_size) == (2, 2, 6)


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_matches_pml(pml_reducers, dtype, reduction_type):
    assert_matches_pml(AvgNonZeroReducer(), pml_reducers.AvgNonZeroReducer(), reduction_type, dtype)
