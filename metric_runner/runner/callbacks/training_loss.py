import torch

from ...trainers import BaseTrainer
from ..state import TrainingState
from .hooks import Callback


class TrainingLoss(Callback):
    """Counts optimizer steps and keeps each step's total loss, detached and on its device, as
    `state.step_loss` for the loggers: no host sync in the step. At the end of the epoch the
    epoch's losses are read at once and their mean becomes the record's train_loss (None for
    the untrained evaluation)."""

    def __init__(self) -> None:
        self.epoch_losses: list[torch.Tensor] = []

    def on_iteration_end(self, trainer: BaseTrainer, state: TrainingState) -> None:
        state.progress.global_step += 1
        state.step_loss = trainer.losses["total_loss"].detach()
        self.epoch_losses.append(state.step_loss)

    def on_epoch_end(self, state: TrainingState) -> None:
        state.record["global_step"] = state.progress.global_step
        state.record["train_loss"] = mean_of(self.epoch_losses)
        self.epoch_losses = []


def mean_of(losses: list[torch.Tensor]) -> float | None:
    """The mean of 0-dim tensors, read from the device with one sync and summed in float64 in
    step order (as reading each step's value on its own would)."""
    if not losses:
        return None
    values = torch.stack(losses).tolist()
    return sum(values) / len(values)
