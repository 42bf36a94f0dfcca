from metric_runner.runner.callbacks import ProgressBar

from .conftest import evaluated


def test_counts_epochs_from_where_the_run_starts(state):
    state.progress.epoch = 2  # a resumed run
    bar = ProgressBar(epochs=5, disable=False)
    bar.on_train_begin(state)
    assert (bar.bar.n, bar.bar.total) == (2, 5)
    evaluated(state, 3, 0.75).record["train_loss"] = 0.5
    bar.on_epoch_end(state)
    assert bar.bar.n == 3
    assert bar.bar.postfix == "best=0.7500, loss=0.5000"
    bar.on_train_end(state)
