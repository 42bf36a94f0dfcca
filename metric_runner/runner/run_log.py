"""What a run leaves in its directory besides checkpoints and events: metrics.jsonl (one JSON
line per evaluation) and summary.md."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The runner writes through the project's one atomic write, which lives in utils so that the
# library (logging_presets) can use it without depending on the runner.
from ..utils.atomic_write import write_atomically

__all__ = [
    "append_record",
    "markdown_table",
    "read_records",
    "summary_table",
    "training_columns",
    "write_atomically",
]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The evaluation records of a metrics.jsonl file ([] when there is none yet)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def append_record(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as file:
        file.write(json.dumps(record) + "\n")


def markdown_table(rows: Sequence[Sequence[object]]) -> str:
    """A markdown table: `rows[0]` the header, each cell converted with str. The project's one
    markdown table builder."""
    header, *body = rows
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, cells)) + " |" for cells in body])


def training_columns(
    records: list[dict[str, Any]], monitor_split: str, monitor_metric: str
) -> dict[str, dict[str, Any]]:
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


def summary_table(columns: dict[str, dict[str, Any]]) -> str:
    """Markdown table: a row per (split, metric), a column per titled evaluation record."""
    if not columns:
        return "No evaluation was run.\n"
    rows = [["split", "metric", *columns]]
    first = next(iter(columns.values()))
    for split, metrics in first["accuracies"].items():
        for metric in metrics:
            values = [f"{r['accuracies'][split][metric]:.4f}" for r in columns.values()]
            rows.append([split, metric, *values])
    return markdown_table(rows) + "\n"
