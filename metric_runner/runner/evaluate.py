"""The test workflow: `metric-run mode=test checkpoint=PATH` evaluates a saved model only."""

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from .callbacks.tensorboard_log import write_evaluation
from .checkpoint import load_checkpoint, load_models
from .components import build_model, check_config, checkpoint_file, load_splits, pick_device
from .run_log import append_record, summary_table


def evaluate_checkpoint(cfg, run_dir):
    """Evaluate the checkpoint's model on val and test; writes metrics.jsonl and summary.md
    into `run_dir` (with tester.return_per_class, the per-class values too; with
    tester.visualize, a scatter plot PNG per split). Returns the evaluation record."""
    specs = check_config(cfg)
    device = pick_device(cfg.device)
    path = checkpoint_file(cfg.checkpoint)
    state = load_checkpoint(path)
    splits = load_splits(specs.dataset, ("val", "test"))
    model, _ = build_model(specs, splits["test"])
    models = dict(model.named_children())
    load_models(models, state, path)
    model.to(device)
    tester = specs.tester.build(data_device=device)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    accuracies, per_class = tester.evaluate(
        splits, state["epoch"], models["trunk"], models.get("embedder"), plot_dir=run_dir
    )
    record = {"epoch": state["epoch"], "checkpoint": str(path), "accuracies": accuracies}
    if per_class is not None:
        record["per_class"] = per_class
    append_record(run_dir / "metrics.jsonl", record)
    with SummaryWriter(log_dir=str(run_dir)) as writer:
        write_evaluation(writer, record)
    table = summary_table({f"checkpoint (epoch {state['epoch']})": record})
    if per_class is not None:
        table += "\n" + per_class_tables(per_class)
    (run_dir / "summary.md").write_text(f"# Test of {path}\n\n{table}")
    print(f"\n{table}\nRun directory: {run_dir}")
    return record


def per_class_tables(per_class):
    """Markdown: per split, a row per class with its number of queries and each metric."""
    sections = []
    for split, rows in per_class.items():
        metrics = [m for m in next(iter(rows.values()), {}) if m != "queries"]
        lines = [
            f"## {split}, per class\n",
            "| class | queries | " + " | ".join(metrics) + " |",
            "|" + "---|" * (len(metrics) + 2),
        ]
        for label, row in rows.items():
            values = " | ".join(f"{row[m]:.4f}" for m in metrics)
            lines.append(f"| {label} | {row['queries']} | {values} |")
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)
