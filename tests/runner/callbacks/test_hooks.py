from types import SimpleNamespace

from metric_runner.runner.callbacks import Callback, TrainerHooks


class Recorder(Callback):
    def __init__(self, name, log, stop_at=None):
        self.name, self.log, self.stop_at = name, log, stop_at

    def on_train_begin(self, state):
        self.log.append((self.name, "begin"))

    def on_iteration_end(self, trainer, state):
        self.log.append((self.name, "iteration", trainer.iteration))

    def on_epoch_end(self, state):
        self.log.append((self.name, "epoch", state.progress.epoch, dict(state.record)))
        return False if state.progress.epoch == self.stop_at else None

    def on_train_end(self, state):
        self.log.append((self.name, "end"))


def test_callbacks_run_in_order_and_any_false_stops_after_all_ran(state):
    log = []
    hooks = TrainerHooks(state, [Recorder("a", log, stop_at=2), Recorder("b", log)])
    hooks.begin()
    hooks.end_of_iteration_hook(SimpleNamespace(iteration=4))
    state.progress.global_step = 7
    assert hooks.end_of_epoch_hook(SimpleNamespace(epoch=1)) is True
    assert hooks.end_of_epoch(2) is False
    hooks.end()
    record = {"epoch": 2, "global_step": 7}
    assert log == [
        ("a", "begin"),
        ("b", "begin"),
        ("a", "iteration", 4),
        ("b", "iteration", 4),
        ("a", "epoch", 1, {"epoch": 1, "global_step": 7}),
        ("b", "epoch", 1, {"epoch": 1, "global_step": 7}),
        ("a", "epoch", 2, record),
        ("b", "epoch", 2, record),  # still runs after "a" asked to stop
        ("a", "end"),
        ("b", "end"),
    ]
    assert state.progress.epoch == 2


def test_agree_takes_the_final_decision(state):
    decisions = []

    def rank0_says_stop(keep_going):
        decisions.append(keep_going)
        return False

    hooks = TrainerHooks(state, [Callback()], agree=rank0_says_stop)
    assert hooks.end_of_epoch(1) is False
    assert decisions == [True]
