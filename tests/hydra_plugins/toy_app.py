"""A tiny Hydra app with metric-run's job bookkeeping around a toy training: each "epoch"
scores `x * epoch / epochs` on val, reported to the running Optuna trial. `fail_at` makes the
trial with that x raise; `sleep` slows each epoch so a test can kill the search mid-way."""

import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

from metric_runner.runner.sweep import report_evaluation, run_job


def toy_training(cfg, run_dir):
    if cfg.x == cfg.fail_at:
        raise RuntimeError(f"toy failure at x={cfg.x}")
    records = []
    for epoch in range(1, cfg.epochs + 1):
        time.sleep(cfg.sleep)
        score = cfg.x * epoch / cfg.epochs
        records.append({"epoch": epoch, "accuracies": {"val": {"score": score}}})
        report_evaluation(epoch, score)
    return records


@hydra.main(
    config_path=str(Path(__file__).with_name("toy_conf")), config_name="toy", version_base="1.3"
)
def toy_app(cfg):
    return run_job(cfg, HydraConfig.get().runtime.output_dir, toy_training)


if __name__ == "__main__":
    toy_app()
