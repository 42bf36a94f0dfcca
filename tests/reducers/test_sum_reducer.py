import pytest
import torch

from metric_runner.reducers import SumReducer
from tests.reducers.reducer_helpers import (
    REDUCED_TYPES,
    assert_empty_losses_give_zero_with_backward,
    assert_matches_pml,
    reduce_with_grad,
)


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_sum_of_all_losses_by_hand(dtype, reduction_type):
    value, grad = reduce_with_grad(SumReducer(), reduction_type, dtype=dtype)
    assert value.item() == pytest.approx(10.5)
    torch.testing.assert_close(grad, torch.ones(6, dtype=dtype))


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_empty_losses_give_zero(reduction_type):
    assert_empty_losses_give_zero_with_backward(SumReducer(), reduction_type)


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_matches_pml(pml_reducers, dtype, reduction_type):
    assert_matches_pml(SumReducer(), pml_reducers.SumReducer(), reduction_type, dtype)
