import json
from pathlib import Path

from tqdm.auto import tqdm

from ..run_log import append_record, read_records, write_atomically
from ..state import TrainingState
from .hooks import Callback


class MetricsLog(Callback):
    """metrics.jsonl: one JSON line per evaluation record, and one printed line per
    evaluation. On resume, evaluations the checkpoint does not cover (a run stopped between
    logging and checkpointing) are dropped first."""

    def __init__(self, path: Path, epochs: int, metric: str) -> None:
        self.path = path
        self.epochs = epochs
        self.metric = metric

    def on_train_begin(self, state: TrainingState) -> None:
        if self.path.is_file():
            kept = [r for r in read_records(self.path) if r["epoch"] <= state.progress.epoch]
            write_atomically(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def on_epoch_end(self, state: TrainingState) -> None:
        if not state.evaluated:
            return
        append_record(self.path, state.record)
        tqdm.write(self.evaluation_line(state.record))

    def evaluation_line(self, record: dict) -> str:
        loss = record.get("train_loss")
        loss = "untrained" if loss is None else f"train loss {loss:.4f}"
        scores = "  ".join(
            f"{split}/{self.metric} {m[self.metric]:.4f}"
            for split, m in record["accuracies"].items()
            if self.metric in m
        )
        return f"epoch {record['epoch']}/{self.epochs}  {loss}  {scores}"
