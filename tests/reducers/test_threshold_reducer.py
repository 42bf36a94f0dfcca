import pytest
import torch

from metric_runner.reducers import ThresholdReducer
from tests.reducers.reducer_helpers import (
    REDUCED_TYPES,
    assert_empty_losses_give_zero_with_backward,
    assert_matches_pml,
    reduce_with_grad,
)

# Losses are 0, 1, 2, 3, .5, 4; both bounds are strict.
CASES = [
    ({"low": 1}, [2.0, 3.0, 4.0]),
    ({"high": 2}, [0.0, 1.0, 0.5]),
    ({"low": 0.5, "high": 4}, [1.0, 2.0, 3.0]),
]


@pytest.mark.parametrize("kwargs, kept", CASES)
@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_mean_over_losses_strictly_inside_bounds(dtype, kwargs, kept, reduction_type):
    value, grad = reduce_with_grad(ThresholdReducer(**kwargs), reduction_type, dtype=dtype)
    assert value.item() == pytest.approx(sum(kept) / len(kept))
    assert torch.count_nonzero(grad) == len(kept)


def test_nothing_kept_gives_zero_with_zero_gradient():
    value, grad = reduce_with_grad(ThresholdReducer(low=10), "element")
    assert value.item() == 0
    torch.testing.assert_close(grad, torch.zeros(6))


def test_infinite_dropped_loss_does_not_poison_the_result():
    value, grad = reduce_with_grad(
        ThresholdReducer(high=10), "element", values=[1.0, float("inf"), 3.0, 0, 0, 0]
    )
    assert value.item() == pytest.approx(4 / 5)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_empty_losses_give_zero(reduction_type):
    assert_empty_losses_give_zero_with_backward(ThresholdReducer(low=0), reduction_type)


def test_stats_count_each_bound():
    reducer = ThresholdReducer(low=0.5, high=3, collect_stats=True)
    reduce_with_grad(reducer, "triplet")
    # above .5: 1, 2, 3, 4; below 3: 0, 1, 2, .5; inside: 1, 2.
    assert (reducer.num_above_low, reducer.num_below_high, reducer.num_past_filter) == (4, 4, 2)
    assert reducer._record_these == ["low", "high"]
    low_only = ThresholdReducer(low=0.5, collect_stats=True)
    reduce_with_grad(low_only, "element")
    assert (low_only.num_above_low, low_only.num_below_high, low_only.num_past_filter) == (4, 0, 4)


def test_stats_are_absent_without_collect_stats():
    reducer = ThresholdReducer(low=0.5, collect_stats=False)
    reduce_with_grad(reducer, "element")
    assert not hasattr(reducer, "num_past_filter")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "at least one of low or high"),
        ({"low": 2, "high": 1}, "low < high"),
        ({"low": 1, "high": 1}, "low < high"),
    ],
)
def test_bad_bounds_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ThresholdReducer(**kwargs)


@pytest.mark.parametrize("kwargs, _", CASES)
@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_matches_pml(pml_reducers, dtype, kwargs, _, reduction_type):
    assert_matches_pml(
        ThresholdReducer(**kwargs), pml_reducers.ThresholdReducer(**kwargs), reduction_type, dtype
    )


def test_bit_identical_to_the_mean_of_the_kept_losses():
    # A masked sum over all losses divided by the count adds in another order: on these
    # float32 losses it differs from torch.mean(kept) (PML's value) in the last bit.
    torch.manual_seed(0)
    for _ in range(20):
        losses = torch.randn(10_000) * 3
        for reducer in (ThresholdReducer(low=0.5), ThresholdReducer(low=-1, high=2)):
            keep = losses > reducer.low
            if reducer.high is not None:
                keep &= losses < reducer.high
            value = reducer(loss_dict_of(losses), None, None)
            assert torch.equal(value, torch.mean(losses[keep]))


def loss_dict_of(losses):
    indices = torch.arange(len(losses))
    return {"loss": {"losses": losses, "indices": indices, "reduction_type": "element"}}


def test_nan_loss_makes_the_mean_nan():
    # PML drops NaN losses; a NaN here means a broken loss, so it is not hidden.
    value, _ = reduce_with_grad(ThresholdReducer(low=0), "element", values=[1.0, float("nan")] * 3)
    assert value.isnan()


def test_gradient_is_one_over_the_count_at_the_kept_losses_exactly():
    # Losses 0, 1, 2, 3, .5, 4 with 0.5 < l < 4: 1, 2 and 3 are kept, each gets exactly 1/3.
    _, grad = reduce_with_grad(ThresholdReducer(low=0.5, high=4), "element")
    third = torch.tensor(1.0) / 3
    assert torch.equal(grad, torch.stack([third * k for k in (0, 1, 1, 1, 0, 0)]))
