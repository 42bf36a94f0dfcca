from pathlib import Path

from ..checkpoint import save_checkpoint
from ..state import TrainingState
from .hooks import Callback


class Checkpointing(Callback):
    """After every epoch: `best.pt` when the evaluation improved, then `last.pt` (best first:
    a run stopped in between redoes this epoch, losing nothing)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_epoch_end(self, state: TrainingState) -> None:
        checkpoint = state.state_dict()
        if state.improved:
            save_checkpoint(checkpoint, self.folder / "best.pt")
        save_checkpoint(checkpoint, self.folder / "last.pt")
