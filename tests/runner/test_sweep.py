"""`metric-run -m` sweeps that survive their jobs (hydra/sweeper=grid with
metric_runner.runner.sweep's bookkeeping): checks before the first job, failures recorded
while the sweep goes on, re-runs that skip finished jobs and resume interrupted ones."""

import json
import sys
from types import SimpleNamespace

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from metric_runner.runner import cli
from metric_runner.runner.callbacks.hooks import Callback
from metric_runner.runner.components import RunError
from metric_runner.runner.registry import ConfigError
from metric_runner.runner.sweep import ACTIVE_TRIAL, TrialReporting, run_job

TINY = ["epochs=1", "model=mlp", "hydra/sweeper=grid"]
RUN = cli.run


def metric_run(monkeypatch, *arguments):
    """`metric-run ARGUMENTS` in this process; returns the exit code."""
    monkeypatch.setattr(sys, "argv", ["metric-run", *arguments])
    try:
        cli.main()
    except SystemExit as exit:
        return exit.code
    return 0


def sweep_log(sweep_dir):
    return [json.loads(line) for line in (sweep_dir / "sweep.jsonl").read_text().splitlines()]


def job_of(sweep_dir, number):
    return json.loads((sweep_dir / str(number) / "job.json").read_text())


def runs_recorded(monkeypatch, fail_when=None):
    """Wrap cli.run: record each job's (loss, seed); raise a NaN-like RunError for one."""
    calls = []

    def run(cfg, run_dir, callbacks=()):
        calls.append((cfg.loss.name, cfg.seed))
        if fail_when == calls[-1]:
            raise RunError("loss is nan at epoch 1, step 3 (global step 3); lower optimizer.lr")
        return RUN(cfg, run_dir, callbacks)

    monkeypatch.setattr(cli, "run", run)
    return calls


@pytest.mark.slow
def test_a_failed_job_is_recorded_the_sweep_goes_on_and_a_rerun_runs_only_it(
    tmp_path, monkeypatch, capsys
):
    sweep_dir = tmp_path / "grid"
    arguments = [
        "-m",
        *TINY,
        f"hydra.sweep.dir={sweep_dir}",
        "loss=triplet,contrastive",
        "seed=0,1",
    ]
    calls = runs_recorded(monkeypatch, fail_when=("ContrastiveLoss", 1))
    assert metric_run(monkeypatch, *arguments) == 1
    assert len(calls) == 4
    out = capsys.readouterr().out
    reason = "RunError: loss is nan at epoch 1, step 3 (global step 3); lower optimizer.lr"
    assert "sweep: 3 done, 1 failed, 0 skipped" in out
    assert f"failed: epochs=1 model=mlp loss=contrastive seed=1: {reason}" in out
    assert [job_of(sweep_dir, n)["status"] for n in range(4)] == ["done"] * 3 + ["failed"]
    assert job_of(sweep_dir, 3)["reason"] == reason
    assert job_of(sweep_dir, 0)["command"] == "metric-run epochs=1 model=mlp loss=triplet seed=0"
    scores = [line["score"] for line in sweep_log(sweep_dir)[:3]]
    assert scores == [job_of(sweep_dir, n)["score"] for n in range(3)]
    records = [json.loads(line) for line in (sweep_dir / "0" / "metrics.jsonl").open()]
    assert scores[0] == max(r["accuracies"]["val"]["mean_average_precision_at_r"] for r in records)
    assert sweep_log(sweep_dir)[3]["status"] == "failed"

    calls = runs_recorded(monkeypatch)
    assert metric_run(monkeypatch, *arguments) == 0
    assert calls == [("ContrastiveLoss", 1)]
    assert "sweep: 1 done, 0 failed, 3 skipped" in capsys.readouterr().out
    assert job_of(sweep_dir, 3)["status"] == "done"
    assert [line["status"] for line in sweep_log(sweep_dir)[4:]] == ["skipped"] * 3 + ["done"]


@pytest.mark.slow
def test_an_interrupted_job_resumes_from_last_pt_with_the_metrics_of_an_uninterrupted_one(
    tmp_path, monkeypatch
):
    sweep_dir = tmp_path / "grid"
    arguments = ["-m", *TINY, "epochs=2", f"hydra.sweep.dir={sweep_dir}", "seed=0,1"]

    def interrupted_in_its_second_epoch(cfg, run_dir, callbacks=()):
        more = [InterruptInEpoch(2)] if cfg.seed == 1 else []
        return RUN(cfg, run_dir, [*callbacks, *more])

    monkeypatch.setattr(cli, "run", interrupted_in_its_second_epoch)
    assert metric_run(monkeypatch, *arguments) == 130
    assert job_of(sweep_dir, 1)["status"] == "running"
    interrupted = [json.loads(line) for line in (sweep_dir / "1" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in interrupted] == [0, 1]  # last.pt holds epoch 1
    monkeypatch.setattr(cli, "run", RUN)
    assert metric_run(monkeypatch, *arguments) == 0
    assert [line["status"] for line in sweep_log(sweep_dir)] == ["done", "skipped", "done"]

    resumed = [json.loads(line) for line in (sweep_dir / "1" / "metrics.jsonl").open()]
    reference = cli.run(cli.compose_config(["epochs=2", "model=mlp", "seed=1"]), tmp_path / "ref")
    assert [r["epoch"] for r in resumed] == [0, 1, 2]
    assert [r["accuracies"] for r in resumed] == [r["accuracies"] for r in reference]


class InterruptInEpoch(Callback):
    """Ctrl-C (or a killed node) in the middle of an epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_iteration_end(self, trainer, state):
        if trainer.epoch == self.epoch:
            raise KeyboardInterrupt


def test_a_bad_combination_stops_the_sweep_before_any_job(tmp_path, monkeypatch, capsys):
    sweep_dir = tmp_path / "grid"
    calls = runs_recorded(monkeypatch)
    arguments = ["-m", *TINY, f"hydra.sweep.dir={sweep_dir}", "loss=triplet,tripplet"]
    assert metric_run(monkeypatch, *arguments) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "metric-run: error: job epochs=1 model=mlp loss=tripplet: loss: no config 'tripplet'"
    )
    assert len(err.splitlines()) == 1
    assert calls == [] and not sweep_dir.exists()


def test_a_job_whose_config_changed_is_refused_naming_it(tmp_path, monkeypatch, capsys):
    sweep_dir = tmp_path / "grid"
    (sweep_dir / "0").mkdir(parents=True)
    (sweep_dir / "0" / "job.json").write_text(json.dumps({"status": "done", "config_hash": "0"}))
    calls = runs_recorded(monkeypatch)
    assert metric_run(monkeypatch, "-m", *TINY, f"hydra.sweep.dir={sweep_dir}", "seed=3") == 2
    assert capsys.readouterr().err.strip() == (
        f"metric-run: error: job epochs=1 model=mlp seed=3: {sweep_dir / '0'} holds a run of "
        "another config; use another sweep_name (hydra.sweep.dir), or delete that job "
        "directory to run it again"
    )
    assert calls == []


def test_trial_reporting_hands_each_evaluation_to_the_attached_trial():
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.ThresholdPruner(lower=0.5),
    )
    trial = study.ask()
    token = ACTIVE_TRIAL.set(trial)
    try:
        reporting = TrialReporting()
        reporting.on_epoch_end(SimpleNamespace(evaluated=True, record={"epoch": 1}, score=0.7))
        reporting.on_epoch_end(SimpleNamespace(evaluated=False, record={"epoch": 2}, score=None))
        with pytest.raises(optuna.TrialPruned, match="pruned at epoch 3 \\(score 0.2000\\)"):
            reporting.on_epoch_end(SimpleNamespace(evaluated=True, record={"epoch": 3}, score=0.2))
    finally:
        ACTIVE_TRIAL.reset(token)
    TrialReporting().on_epoch_end(SimpleNamespace(evaluated=True, record={"epoch": 4}, score=0.1))
    assert study.trials[0].intermediate_values == {1: 0.7, 3: 0.2}  # none once detached


def test_a_run_that_refuses_to_start_leaves_the_directorys_record(tmp_path, monkeypatch):
    """`metric-run resume=RUN` with a config the run cannot continue: RUN's job.json stays."""
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: False))  # a single run
    record = {"status": "done", "command": "metric-run epochs=1", "config_hash": "0", "score": 0.5}
    (tmp_path / "job.json").write_text(json.dumps(record))
    cfg = OmegaConf.create({"resume": str(tmp_path), "epochs": 2, "device": "cpu"})

    def refused(cfg, run_dir):
        raise ConfigError("resume: this config differs from the run's in scheduler.T_max")

    with pytest.raises(ConfigError, match="scheduler.T_max"):
        run_job(cfg, tmp_path, refused)
    assert json.loads((tmp_path / "job.json").read_text()) == record
