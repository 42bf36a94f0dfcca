from tqdm.auto import tqdm

from ..state import TrainingState
from .hooks import Callback


class EarlyStopping(Callback):
    """Stops after `patience` evaluations in a row without improvement (None: never)."""

    def __init__(self, patience: int | None, monitor: tuple[str, str]) -> None:
        self.patience = patience
        self.monitor = monitor

    def on_epoch_end(self, state: TrainingState) -> bool | None:
        progress = state.progress
        if self.patience is None or not state.evaluated or progress.stale_evals < self.patience:
            return None
        split, metric = self.monitor
        tqdm.write(
            f"early stopping at epoch {progress.epoch}: {split}/{metric} did not improve for "
            f"{self.patience} evaluations (best {progress.best_score:.4f} at epoch "
            f"{progress.best_epoch})"
        )
        return False
