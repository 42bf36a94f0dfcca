import pytest
import torch

from metric_runner.reducers import SumReducer
from metric_runner.regularizers import LpRegularizer
from tests.regularizers.regularizer_helpers import (
    assert_float32_agrees_with_float64,
    assert_matches_pml,
    random_weights,
    rows_3x2,
    value_and_grad,
)


def test_mean_l2_norm_by_hand():
    value, grad = value_and_grad(LpRegularizer(), rows_3x2())
    assert value.item() == pytest.approx((5 + 1 + 2) / 3)
    # d||x|| / dx = x / ||x||, over 3 rows.
    expected_grad = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]], dtype=torch.float64) / 3
    torch.testing.assert_close(grad, expected_grad)


def test_p_power_and_reducer_by_hand():
    assert LpRegularizer(p=1, power=2)(rows_3x2()).item() == pytest.approx((49 + 1 + 4) / 3)
    assert LpRegularizer(reducer=SumReducer())(rows_3x2()).item() == pytest.approx(8)


def test_zero_rows_give_zero_with_finite_gradient():
    for p in (1, 2):
        value, grad = value_and_grad(LpRegularizer(p=p), torch.zeros(3, 4))
        assert value.item() == 0
        assert torch.equal(grad, torch.zeros(3, 4))


def test_records_p_and_power():
    regularizer = LpRegularizer(p=1, power=3)
    assert regularizer._record_these == ["p", "power"]
    assert (regularizer.p, regularizer.power) == (1, 3)


def test_rows_must_be_2d():
    with pytest.raises(ValueError, match="must be 2D"):
        LpRegularizer()(torch.ones(4))


def test_float32_agrees_with_float64():
    assert_float32_agrees_with_float64(lambda: LpRegularizer(p=1, power=2), random_weights())


@pytest.mark.parametrize("kwargs", [{}, {"p": 1, "power": 2}, {"p": 3}])
def test_matches_pml(pml_regularizers, dtype, kwargs):
    assert_matches_pml(
        LpRegularizer(**kwargs),
        pml_regularizers.LpRegularizer(**kwargs),
        random_weights(dtype=dtype),
        dtype,
    )


def test_matches_pml_with_another_reducer(pml_regularizers, pml_reducers, dtype):
    ours = LpRegularizer(power=2, reducer=SumReducer())
    theirs = pml_regularizers.LpRegularizer(power=2, reducer=pml_reducers.SumReducer())
    assert_matches_pml(ours, theirs, random_weights(dtype=dtype), dtype)
