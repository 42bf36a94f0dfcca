from types import SimpleNamespace

import pytest
import torch

from metric_runner.runner.callbacks import TrainingLoss

from .conftest import trainer_with_loss


def test_counts_steps_keeps_the_step_loss_and_the_epoch_mean(state):
    callback = TrainingLoss()
    callback.on_epoch_end(state)  # the untrained evaluation: no step yet
    assert state.record["train_loss"] is None
    for value in (0.5, 0.25, 1.0):
        callback.on_iteration_end(trainer_with_loss(value), state)
    assert state.progress.global_step == 3
    assert state.step_loss.item() == 1.0 and not state.step_loss.requires_grad
    state.start_epoch_record(1)
    callback.on_epoch_end(state)
    assert state.record["train_loss"] == pytest.approx(1.75 / 3, abs=1e-7)
    assert state.record["global_step"] == 3
    callback.on_iteration_end(trainer_with_loss(2.0), state)
    state.start_epoch_record(2)
    callback.on_epoch_end(state)
    assert state.record["train_loss"] == 2.0  # a new epoch's mean
    assert state.progress.global_step == 4


def test_the_step_reads_nothing_from_the_device(state):
    """Losses on the meta device have no value to read: any host read in the step would fail."""
    callback = TrainingLoss()
    for _ in range(3):
        loss = torch.empty((), device="meta", requires_grad=True) * 1
        callback.on_iteration_end(SimpleNamespace(losses={"total_loss": loss}), state)
    assert state.progress.global_step == 3 and state.step_loss.device.type == "meta"


def test_the_epoch_mean_is_the_float64_sum_of_the_float32_step_losses(state):
    values = [0.1, 0.2, 0.7, 1e-8]
    callback = TrainingLoss()
    for value in values:
        callback.on_iteration_end(trainer_with_loss(value), state)
    callback.on_epoch_end(state)
    steps = [torch.tensor(v).item() for v in values]  # each as float32, read one by one
    assert state.record["train_loss"] == sum(steps) / len(steps)
