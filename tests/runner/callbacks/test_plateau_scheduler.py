import pytest
import torch

from metric_runner.runner.callbacks import PlateauScheduler

from .conftest import evaluated


def test_steps_with_each_evaluations_score_only(state):
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        state.optimizer, mode="max", factor=0.5, patience=0
    )
    callback = PlateauScheduler(scheduler)
    rates = []
    for epoch, score in enumerate((0.5, 0.6, 0.6, None, 0.55)):
        if score is None:
            state.start_epoch_record(epoch)  # not evaluated: the scheduler does not step
        else:
            evaluated(state, epoch, score)
        callback.on_epoch_end(state)
        rates.append(state.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
