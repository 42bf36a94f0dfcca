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


# The hinge losses of a loss that sets "nonnegative": zeros below the bound and positives.
HINGE_VALUES = [0.0, 1.0, 2.0, 0.0, 0.5, 4.0]


@pytest.mark.parametrize(
    "kwargs, kept",
    [
        ({"low": 0}, [1.0, 2.0, 0.5, 4.0]),
        ({"low": -1}, HINGE_VALUES),
        ({"low": 0, "high": 2}, [1.0, 0.5]),
    ],
)
def test_nonnegative_hint_gives_the_same_mean(kwargs, kept):
    hinted, hinted_grad = reduce_with_grad(
        ThresholdReducer(**kwargs), "triplet", values=HINGE_VALUES, nonnegative=True
    )
    plain, plain_grad = reduce_with_grad(ThresholdReducer(**kwargs), "triplet", values=HINGE_VALUES)
    assert hinted.item() == plain.item() == pytest.approx(sum(kept) / len(kept))
    # Only the gradient w.r.t. the zero losses differs (the hinge upstream stops it).
    positive = torch.tensor(HINGE_VALUES) > 0
    torch.testing.assert_close(hinted_grad[positive], plain_grad[positive])


def test_nonnegative_hint_skips_only_a_bound_at_or_below_zero():
    hinted, grad = reduce_with_grad(
        ThresholdReducer(low=0), "element", values=HINGE_VALUES, nonnegative=True
    )
    torch.testing.assert_close(grad, torch.full((6,), 1 / 4))
    # low > 0 drops positive losses: the hint changes nothing.
    hinted, grad = reduce_with_grad(
        ThresholdReducer(low=0.5), "element", values=HINGE_VALUES, nonnegative=True
    )
    assert hinted.item() == pytest.approx(7 / 3)
    torch.testing.assert_close(grad, torch.tensor([0, 1, 1, 0, 0, 1]) / 3)


def test_nonnegative_hint_is_not_passed_to_a_subclass_override():
    class FirstKeptReducer(ThresholdReducer):
        def element_reduction(self, losses, loss_indices, embeddings, labels):
            return losses[losses > self.low][0]

    value, _ = reduce_with_grad(
        FirstKeptReducer(low=0.5), "pos_pair", values=HINGE_VALUES, nonnegative=True
    )
    assert value.item() == 1.0


def test_nan_loss_makes_the_mean_nan():
    # PML drops NaN losses; a NaN here means a broken loss, so it is not hidden.
    value, _ = reduce_with_grad(ThresholdReducer(low=0), "element", values=[1.0, float("nan")] * 3)
    assert value.isnan()
