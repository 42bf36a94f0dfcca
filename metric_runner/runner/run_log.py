"""What a run leaves in its directory besides checkpoints and events: metrics.jsonl (one JSON
line per evaluation) and summary.md."""

import json
import os
from pathlib import Path


def read_records(path):
    """The evaluation records of a metrics.jsonl file ([] when there is none yet)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def append_record(path, record):
    with path.open("a") as file:
        file.write(json.dumps(record) + "\n")


def write_atomically(path, content):
    """Write `content` (text, or a function that writes the file at the path it is given, such
    as `partial(torch.save, state)`) next to `path`, then rename: a crash never leaves a
    half-written `path`. The project's one atomic write."""
    temporary = Path(str(path) + ".tmp")
    if callable(content):
        content(temporary)
    else:
        temporary.write_text(content)
    os.replace(temporary, path)


def markdown_table(rows):
    """A markdown table: `rows[0]` the header, each cell converted with str. The project's one
    markdown table builder."""
    header, *body = rows
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, cells)) + " |" for cells in body])


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
    rows = [["split", "metric", *columns]]
    first = next(iter(columns.values()))
    for split, metrics in first["accuracies"].items():
        for metric in metrics:
            values = [f"{r['accuracies'][split][metric]:.4f}" for r in columns.values()]
            rows.append([split, metric, *values])
    return markdown_table(rows) + "\n"
