from ...trainers import BaseTrainer
from ..record_stats import StatsRecorder
from ..state import TrainingState
from .hooks import Callback


class ComponentStats(Callback):
    """log_stats=true: after each step the statistics the loss and miner recorded
    (`state.step_stats`, for the loggers); their epoch means become the record's stats."""

    def __init__(self, recorder: StatsRecorder) -> None:
        self.recorder = recorder
        self.stepped = False

    def on_iteration_end(self, trainer: BaseTrainer, state: TrainingState) -> None:
        state.step_stats = self.recorder.step()
        self.stepped = True

    def on_epoch_end(self, state: TrainingState) -> None:
        if self.stepped:  # the untrained evaluation has no training step
            state.record["stats"] = self.recorder.epoch_means()
            self.stepped = False
