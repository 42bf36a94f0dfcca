from types import SimpleNamespace

from metric_runner.runner.callbacks import LearningRates


def test_the_rates_the_epoch_trained_with_not_the_scheduled_next_ones(state):
    callback = LearningRates(state.optimizer)
    callback.on_epoch_end(state)
    assert state.record["lr"] == {"model": 0.1, "loss": 0.5}  # untrained: the current rates
    callback.on_iteration_end(SimpleNamespace(), state)
    for group in state.optimizer.param_groups:  # the epoch's scheduler step, before the hook
        group["lr"] /= 10
    callback.on_epoch_end(state)
    assert state.record["lr"] == {"model": 0.1, "loss": 0.5}
    callback.on_epoch_end(state)
    assert state.record["lr"] == {"model": 0.01, "loss": 0.05}
