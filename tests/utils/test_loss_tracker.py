"""LossTracker: weights (1.0 where not given), weighting in place, total; same as PML's."""

import pytest
import torch

from metric_runner.utils.loss_tracker import LossTracker


def test_starts_at_zero_with_unit_weights_and_a_total():
    tracker = LossTracker(["a", "b"])
    assert tracker.losses == {"a": 0, "b": 0, "total_loss": 0}
    assert tracker.loss_weights == {"a": 1, "b": 1, "total_loss": 1}
    assert list(LossTracker(["a", "total_loss"]).losses) == ["a", "total_loss"]


def test_update_weights_each_loss_and_sums_them():
    tracker = LossTracker(["a", "b", "c"])
    losses = tracker.losses
    tracker.losses["a"], tracker.losses["b"] = torch.tensor(1.5), torch.tensor(4.0)
    tracker.update({"a": 2, "b": 0.25})
    assert tracker.losses is losses  # mutated in place: trainer and hooks share it
    assert float(tracker.losses["a"]) == 3.0 and float(tracker.losses["b"]) == 1.0
    assert tracker.losses["c"] == 0
    assert float(tracker.losses["total_loss"]) == 4.0
    assert tracker.loss_weights == {"a": 2, "b": 0.25, "c": 1.0, "total_loss": 1.0}


def test_total_keeps_the_gradient():
    weights = torch.tensor([1.0, 2.0], requires_grad=True)
    tracker = LossTracker(["a", "b"])
    tracker.losses["a"], tracker.losses["b"] = weights[0] * 3, weights[1] ** 2
    tracker.update({"a": 2.0, "b": 0.5})
    tracker.losses["total_loss"].backward()
    assert weights.grad.tolist() == [6.0, 2.0]


def test_matches_pml(pml):
    from pytorch_metric_learning.utils.loss_tracker import LossTracker as PMLLossTracker

    results = []
    for cls in (LossTracker, PMLLossTracker):
        tracker = cls(["x", "y", "z"])
        tracker.losses["x"], tracker.losses["y"] = torch.tensor(0.3), torch.tensor(-1.2)
        tracker.set_loss_weights({"x": 3.0, "total_loss": 7.0})
        snapshot = dict(tracker.loss_weights)
        tracker.update({"x": 3.0, "y": 0.5})
        results.append((snapshot, tracker.loss_weights, tracker.losses))
    (w_ours, w2_ours, l_ours), (w_pml, w2_pml, l_pml) = results
    assert w_ours == w_pml and w2_ours == w2_pml
    assert {k: float(v) for k, v in l_ours.items()} == pytest.approx(
        {k: float(v) for k, v in l_pml.items()}
    )


def test_unit_weights_add_no_tensor_op_to_the_step():
    """x * 1 and 0 + x are x bit for bit, so they are skipped: a single loss is its own total,
    and two losses cost one addition."""
    weights = torch.tensor([1.0, 2.0], requires_grad=True)
    single = LossTracker(["a"])
    single.losses["a"] = weights[0] * 3
    single.update({})
    assert single.losses["total_loss"] is single.losses["a"]
    pair = LossTracker(["a", "b"])
    a, b = weights[0] * 3, weights[1] ** 2
    pair.losses["a"], pair.losses["b"] = a, b
    pair.update({"b": 1.0})
    total = pair.losses["total_loss"]
    assert pair.losses["a"] is a and pair.losses["b"] is b
    assert [f[0] for f in total.grad_fn.next_functions] == [a.grad_fn, b.grad_fn]
