import pytest
import torch

from metric_runner.reducers import DivisorReducer
from tests.reducers.reducer_helpers import (
    LABELS,
    REDUCED_TYPES,
    assert_matches_pml,
    embeddings,
    loss_dict,
    losses,
    reduce_with_grad,
)


@pytest.mark.parametrize("divisor", [4, 2.5, torch.tensor(4), torch.tensor(2.5)])
@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_sum_over_divisor_by_hand(dtype, reduction_type, divisor):
    value, grad = reduce_with_grad(DivisorReducer(), reduction_type, dtype=dtype, divisor=divisor)
    assert value.item() == pytest.approx(10.5 / float(divisor))
    torch.testing.assert_close(grad, torch.full((6,), 1 / float(divisor), dtype=dtype))


@pytest.mark.parametrize("divisor", [0, torch.tensor(0), torch.tensor(0.0)])
def test_zero_divisor_gives_zero_with_finite_gradient(divisor):
    value, grad = reduce_with_grad(DivisorReducer(), "element", divisor=divisor)
    assert value.item() == 0
    torch.testing.assert_close(grad, torch.zeros(6))


def test_missing_divisor_is_a_clear_error():
    with pytest.raises(ValueError, match="'divisor'"):
        DivisorReducer()(loss_dict(losses(), "element"), embeddings(), LABELS)


def test_divisor_stat_is_a_number():
    reducer = DivisorReducer(collect_stats=True)
    reduce_with_grad(reducer, "element", divisor=torch.tensor(3))
    assert reducer.divisor == 3 and isinstance(reducer.divisor, int)


@pytest.mark.parametrize("divisor", [3, torch.tensor(2.5), torch.tensor(0)])
@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_matches_pml(pml_reducers, dtype, reduction_type, divisor):
    assert_matches_pml(
        DivisorReducer(), pml_reducers.DivisorReducer(), reduction_type, dtype, divisor=divisor
    )
