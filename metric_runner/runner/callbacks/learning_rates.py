import torch

from ...trainers import BaseTrainer
from ..state import TrainingState
from .hooks import Callback


def current_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {group["name"]: group["lr"] for group in optimizer.param_groups}


class LearningRates(Callback):
    """The record's lr: {parameter group name: rate} as the epoch's last step used it (before
    the epoch's scheduler step), or the current rates for the untrained evaluation."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.trained_with = None

    def on_iteration_end(self, trainer: BaseTrainer, state: TrainingState) -> None:
        self.trained_with = current_rates(self.optimizer)

    def on_epoch_end(self, state: TrainingState) -> None:
        state.record["lr"] = self.trained_with or current_rates(self.optimizer)
        self.trained_with = None
