from tqdm.auto import tqdm

from ..state import TrainingState
from .hooks import Callback


class ProgressBar(Callback):
    """A tqdm bar over the epochs; `disable=None`: on terminals only (logs get one line per
    evaluation)."""

    def __init__(self, epochs: int, disable: bool | None = None) -> None:
        self.epochs = epochs
        self.disable = disable
        self.bar = None

    def on_train_begin(self, state: TrainingState) -> None:
        self.bar = tqdm(
            desc="epochs",
            initial=state.progress.epoch,
            total=self.epochs,
            dynamic_ncols=True,
            disable=self.disable,
        )

    def on_epoch_end(self, state: TrainingState) -> None:
        if state.progress.epoch == 0:
            return
        self.bar.update(1)
        loss = state.record.get("train_loss")
        self.bar.set_postfix(loss=f"{loss:.4f}", best=f"{state.progress.best_score:.4f}")

    def on_train_end(self, state: TrainingState) -> None:
        if self.bar is not None:
            self.bar.close()
