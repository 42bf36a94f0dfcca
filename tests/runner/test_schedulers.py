"""Learning-rate schedules in real runs: the lr each epoch trained with, read back from
metrics.jsonl, against the schedule's rule replayed by hand."""

import pytest

from metric_runner.runner.cli import compose_config, run

pytestmark = pytest.mark.slow
BASE = ["model=mlp", "self_supervised=null", "epochs=5", "optimizer.lr=0.01"]


def trained_lrs(records):
    return [record["lr"]["model"] for record in records[1:]]


def test_plateau_halves_the_rate_after_each_evaluation_without_improvement(tmp_path):
    # Improving means beating the best score by 50% (threshold, relative): after the first
    # evaluation the run surely plateaus, whatever this machine's numbers.
    cfg = compose_config(
        [*BASE, "scheduler=plateau", "scheduler.patience=0", "scheduler.threshold=0.5"]
    )
    records = run(cfg, tmp_path)
    expected, lr, best = [], 0.01, float("-inf")
    for record in records[:-1]:  # each evaluation sets the rate of the epoch after it
        score = record["accuracies"]["val"]["mean_average_precision_at_r"]
        if score > best * (1 + 0.5):
            best = score
        else:
            lr *= 0.5
        expected.append(lr)
    assert trained_lrs(records) == pytest.approx(expected, rel=1e-12)
    assert len(set(expected)) > 1, "this run never plateaued; the check would be empty"


def test_step_schedule_multiplies_every_step_size_epochs(tmp_path):
    cfg = compose_config([*BASE, "scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.1"])
    expected = [0.01, 0.01, 1e-3, 1e-3, 1e-4]  # epochs 1-5
    assert trained_lrs(run(cfg, tmp_path)) == pytest.approx(expected, rel=1e-12)
