import pytest

from metric_runner.runner.callbacks import TrainingLoss

from .conftest import trainer_with_loss


def test_counts_steps_keeps_the_step_loss_and_the_epoch_mean(state):
    callback = TrainingLoss()
    callback.on_epoch_end(state)  # the untrained evaluation: no step yet
    assert state.record["train_loss"] is None
    for value in (0.5, 0.25, 1.0):
        callback.on_iteration_end(trainer_with_loss(value), state)
    assert state.progress.global_step == 3 and state.step_loss == 1.0
    state.start_epoch_record(1)
    callback.on_epoch_end(state)
    assert state.record["train_loss"] == pytest.approx(1.75 / 3, abs=1e-7)
    assert state.record["global_step"] == 3
    callback.on_iteration_end(trainer_with_loss(2.0), state)
    state.start_epoch_record(2)
    callback.on_epoch_end(state)
    assert state.record["train_loss"] == 2.0  # a new epoch's mean
    assert state.progress.global_step == 4
