import torch

from ..state import TrainingState
from .hooks import Callback


class PlateauScheduler(Callback):
    """ReduceLROnPlateau steps with each evaluation's monitored score (mode: max), untrained
    evaluation included, so each evaluation sets the rate of the epochs after it."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau) -> None:
        self.scheduler = scheduler

    def on_epoch_end(self, state: TrainingState) -> None:
        if state.score is not None:
            self.scheduler.step(state.score)
