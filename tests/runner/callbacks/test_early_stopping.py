from metric_runner.runner.callbacks import EarlyStopping

from .conftest import evaluated


def test_stops_after_patience_evaluations_without_improvement(state, capsys):
    callback = EarlyStopping(patience=2, monitor=("val", "mean_average_precision_at_r"))
    decisions = []
    for epoch, score in enumerate((0.5, 0.4, 0.6, 0.6, 0.55)):
        decisions.append(callback.on_epoch_end(evaluated(state, epoch, score)))
    assert decisions == [None, None, None, None, False]
    assert capsys.readouterr().out.strip() == (
        "early stopping at epoch 4: val/mean_average_precision_at_r did not improve for 2 "
        "evaluations (best 0.6000 at epoch 2)"
    )


def test_never_stops_without_patience_or_evaluation(state):
    never = EarlyStopping(patience=None, monitor=("val", "m"))
    assert all(never.on_epoch_end(evaluated(state, e, 0.1)) is None for e in range(5))
    state.start_epoch_record(6)  # stale, but not evaluated this epoch
    assert EarlyStopping(patience=1, monitor=("val", "m")).on_epoch_end(state) is None
