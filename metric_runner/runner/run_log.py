"""What a run leaves in its directory besides checkpoints: metrics.jsonl (one JSON line per
evaluation), TensorBoard events (loss, metrics, learning rates, component statistics with
log_stats=true) and summary.md."""

import json
import os
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class RunLog:
    def __init__(self, run_dir, keep_epochs_up_to=None):
        """`keep_epochs_up_to`: on resume, drop evaluations the checkpoint does not cover (a run
        stopped between logging an evaluation and checkpointing it)."""
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if keep_epochs_up_to is not None:
            kept = [r for r in self.records() if r["epoch"] <= keep_epochs_up_to]
            write_atomically(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=None)

    def records(self):
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]

    def log_step(self, global_step, loss):
        self.writer.add_scalar("train/loss", loss, global_step)

    def log_stats(self, global_step, stats):
        """stats: {"loss/num_pos_pairs": value, ...} -> TensorBoard scalars stats/...."""
        for name, value in stats.items():
            self.writer.add_scalar(f"stats/{name}", value, global_step)

    def log_evaluation(self, record):
        """record: {"epoch", "global_step", "accuracies": {split: {metric: value}}, ...}."""
        with self.metrics_path.open("a") as file:
            file.write(json.dumps(record) + "\n")
        for split, metrics in record["accuracies"].items():
            for metric, value in metrics.items():
                self.writer.add_scalar(f"{split}/{metric}", value, record["epoch"])
        for group, lr in record.get("lr", {}).items():
            self.writer.add_scalar(f"lr/{group}", lr, record["epoch"])
        if record.get("train_loss") is not None:
            self.writer.add_scalar("train/epoch_loss", record["train_loss"], record["epoch"])
        self.writer.flush()

    def close(self):
        self.writer.close()


def write_atomically(path, text):
    temporary = Path(str(path) + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def training_columns(records, monitor_split, monitor_metric):
    """The evaluations a training summary shows: untrained (epoch 0), best (by the monitored
    metric, earliest on ties as in training) and last, each once."""
    scored = [r for r in records if monitor_metric in r["accuracies"].get(monitor_split, {})]
    candidates = (
        ("untrained", next((r for r in records if r["epoch"] == 0), None)),
        (
            "best",
            max(scored, key=lambda r: r["accuracies"][monitor_split][monitor_metric], default=None),
        ),
        ("last", records[-1] if records else None),
    )
    columns = {}
    for title, record in candidates:
        if record is not None and all(record is not shown for shown in columns.values()):
            columns[f"{title} (epoch {record['epoch']})"] = record
    return columns


def summary_table(columns):
    """Markdown table: a row per (split, metric), a column per titled evaluation record."""
    if not columns:
        return "No evaluation was run.\n"
    lines = ["| split | metric | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    first = next(iter(columns.values()))
    for split, metrics in first["accuracies"].items():
        for metric in metrics:
            values = [f"{r['accuracies'][split][metric]:.4f}" for r in columns.values()]
            lines.append(f"| {split} | {metric} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"
