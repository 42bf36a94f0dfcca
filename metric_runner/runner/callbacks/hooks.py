"""Callbacks: the runner's behaviour on the trainer's two hooks (PML's contract: an
end-of-epoch hook returning False stops training)."""

from collections.abc import Callable, Iterable

from ...trainers import BaseTrainer
from ..state import TrainingState


class Callback:
    """One piece of behaviour; override the moments you need. Each gets the TrainingState."""

    def on_train_begin(self, state: TrainingState) -> None:
        """Before the untrained evaluation (a new run) or the first resumed epoch."""

    def on_iteration_end(self, trainer: BaseTrainer, state: TrainingState) -> None:
        """After each optimizer step; `trainer.losses` holds the step's losses. This runs inside
        the training loop: keep values on the device (no `.item()`) and read them at the rate
        they are logged."""

    def on_epoch_end(self, state: TrainingState) -> bool | None:
        """After each epoch (and once for epoch 0, the untrained model); return False to stop."""

    def on_train_end(self, state: TrainingState) -> None:
        """After the last epoch, or when training ends early or fails."""


class TrainerHooks:
    """Runs `callbacks` in order on the trainer's hooks, with the TrainingState.

    `agree(keep_going) -> bool` makes every process take the same decision when several
    train together (rank 0's; it also keeps them in step).
    """

    def __init__(
        self,
        state: TrainingState,
        callbacks: Iterable[Callback],
        agree: Callable[[bool], bool] | None = None,
    ) -> None:
        self.state = state
        self.callbacks = list(callbacks)
        self.agree = agree

    def begin(self) -> None:
        for callback in self.callbacks:
            callback.on_train_begin(self.state)

    def end_of_iteration_hook(self, trainer: BaseTrainer) -> None:
        for callback in self.callbacks:
            callback.on_iteration_end(trainer, self.state)

    def end_of_epoch_hook(self, trainer: BaseTrainer) -> bool:
        return self.end_of_epoch(trainer.epoch)

    def end_of_epoch(self, epoch: int) -> bool:
        """The end-of-epoch callbacks for `epoch` (0: the untrained model); every callback runs
        even when an earlier one says stop. Returns False to stop."""
        self.state.start_epoch_record(epoch)
        keep_going = True
        for callback in self.callbacks:
            keep_going &= callback.on_epoch_end(self.state) is not False
        return self.agree(keep_going) if self.agree is not None else keep_going

    def end(self) -> None:
        for callback in self.callbacks:
            callback.on_train_end(self.state)
