"""The test workflow: `metric-run mode=test checkpoint=PATH` evaluates a saved model only."""

from pathlib import Path

from .checkpoint import load_checkpoint, load_models
from .components import build_model, check_config, checkpoint_file, load_splits, pick_device
from .run_log import RunLog, summary_table


def evaluate_checkpoint(cfg, run_dir):
    """Evaluate the checkpoint's model on val and test; writes metrics.jsonl and summary.md
    into `run_dir`. Returns the evaluation record."""
    specs = check_config(cfg)
    device = pick_device(cfg.device)
    path = checkpoint_file(cfg.checkpoint)
    state = load_checkpoint(path)
    splits = load_splits(specs.dataset, ("val", "test"))
    model, _ = build_model(specs, splits["test"])
    load_models(model, state, path)
    model.to(device)
    tester = specs.tester.build()

    accuracies = tester.test(model, splits, device)
    record = {"epoch": state["epoch"], "checkpoint": str(path), "accuracies": accuracies}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir)
    log.log_evaluation(record)
    log.close()
    table = summary_table({f"checkpoint (epoch {state['epoch']})": record})
    (Path(run_dir) / "summary.md").write_text(f"# Test of {path}\n\n{table}")
    print(f"\n{table}\nRun directory: {run_dir}")
    return record
