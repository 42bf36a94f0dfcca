from pathlib import Path

from ...trainers import BaseTrainer
from ...utils.logging_presets import get_hook_container, get_record_keeper
from ..state import TrainingState
from .hooks import Callback


class RecordKeeperLog(Callback):
    """logger=record_keeper: CSV files and an SQLite database (logs.db) in `folder` through
    record-keeper, as PML's logging presets write them: every `log_freq` iterations the
    trainer's records (losses, loss weights, loss and miner settings and statistics, learning
    rates: HookContainer's end_of_iteration_hook), and each evaluation's metrics, one table per
    split (`accuracies_<split>`, with the epoch's train_loss)."""

    def __init__(self, folder: Path, log_freq: int = 50) -> None:
        self.folder = folder
        self.log_freq = log_freq
        self.record_keeper = None

    def on_train_begin(self, state: TrainingState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.record_keeper, _, _ = get_record_keeper(str(self.folder))
        self.presets = get_hook_container(self.record_keeper, log_freq=self.log_freq)

    def on_iteration_end(self, trainer: BaseTrainer, state: TrainingState) -> None:
        self.presets.end_of_iteration_hook(trainer)

    def on_epoch_end(self, state: TrainingState) -> None:
        if self.record_keeper is None or not state.evaluated:
            return
        record = state.record
        for split, metrics in record["accuracies"].items():
            row = {**metrics, "train_loss": record.get("train_loss")}
            self.record_keeper.update_records(
                row, record["epoch"], parent_name=f"accuracies_{split}"
            )
        self.record_keeper.save_records()
