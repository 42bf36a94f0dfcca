"""Our Optuna sweeper on a toy Hydra app (tests/hydra_plugins/toy_app.py) that runs through
metric-run's job bookkeeping: a search killed with SIGKILL resumes without repeating trials,
a failing trial is FAIL and the search goes on, a pruner stops a trial with bad scores."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.metric_runner_optuna_sweeper._impl import search_space
from metric_runner.runner.sweep import open_storage
from tests.hydra_plugins.toy_app import toy_app

REPOSITORY = Path(__file__).resolve().parents[2]
TOY_APP = Path(__file__).with_name("toy_app.py")


def storage_of(sweep_dir):
    return f"sqlite:///{sweep_dir}/optuna.db"


def load(sweep_dir):
    return optuna.load_study(study_name=sweep_dir.name, storage=storage_of(sweep_dir))


def enqueued_study(sweep_dir, *xs):
    """A study the sweeper will continue, its first trials' x given."""
    sweep_dir.mkdir(parents=True)
    study = optuna.create_study(
        study_name=sweep_dir.name, storage=storage_of(sweep_dir), direction="maximize"
    )
    for x in xs:
        study.enqueue_trial({"x": x})


def run_toy(monkeypatch, sweep_dir, *overrides):
    argv = ["toy_app", "-m", f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.plots=false"]
    monkeypatch.setattr(sys, "argv", [*argv, *overrides])
    toy_app()


def done_jobs(sweep_dir):
    lines = (sweep_dir / "sweep.jsonl").read_text().splitlines()
    return [json.loads(line)["dir"] for line in lines if json.loads(line)["status"] == "done"]


@pytest.mark.slow
def test_a_killed_search_resumes_without_repeating_finished_trials(tmp_path):
    sweep_dir = tmp_path / "search"
    command = [sys.executable, str(TOY_APP), "-m", f"hydra.sweep.dir={sweep_dir}", "sleep=0.4"]
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 50
    while completed(sweep_dir) < 2:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the search did not finish 2 trials in time"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = {t.number for t in load(sweep_dir).trials if t.state == TrialState.COMPLETE}

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    trials = load(sweep_dir).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4, [(t.number, t.state, t.params, t.user_attrs) for t in trials]
    assert len({t.params["x"] for t in complete}) == 4
    for trial in trials:  # at most the trial running at the kill: FAIL, its parameters retried
        if trial.state != TrialState.COMPLETE:
            assert trial.state == TrialState.FAIL
            assert trial.user_attrs["fail_reason"].startswith("interrupted: its process")
            retries = [t for t in complete if t.user_attrs.get("retry_of") == trial.number]
            assert [t.params for t in retries] == ([trial.params] if trial.params else [])
    jobs = done_jobs(sweep_dir)
    assert len(jobs) == len(set(jobs)) == 4  # no finished trial ran twice
    assert {str(n) for n in finished_before} <= set(jobs)
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["value"] == max(t.value for t in complete)
    assert best["command"] == f"metric-run sleep=0.4 x={best['params']['x']!r}"
    for name in ("optimization_history.png", "param_importances.png"):
        assert (sweep_dir / name).read_bytes()[:4] == b"\x89PNG"


def completed(sweep_dir):
    """COMPLETE trials of the search so far (0 before its study exists)."""
    if not (sweep_dir / "optuna.db").is_file():
        return 0
    try:
        study = optuna.load_study(
            study_name=sweep_dir.name, storage=open_storage(storage_of(sweep_dir))
        )
        return sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    except Exception:  # the study is being created or the database is locked for a moment
        return 0


def test_a_failing_trial_is_fail_with_its_reason_and_the_search_goes_on(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "search"
    enqueued_study(sweep_dir, 0.3)
    run_toy(monkeypatch, sweep_dir, "fail_at=0.3", "hydra.sweeper.n_trials=3")
    trials = load(sweep_dir).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].user_attrs["fail_reason"] == "RuntimeError: toy failure at x=0.3"
    job = json.loads((sweep_dir / "0" / "job.json").read_text())
    assert (job["status"], job["reason"]) == ("failed", "RuntimeError: toy failure at x=0.3")
    assert all(t.value == pytest.approx(t.params["x"]) for t in trials[1:])


def test_a_pruner_prunes_the_trial_whose_scores_are_bad(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "search"
    enqueued_study(sweep_dir, 0.9, 0.8, 0.1)
    pruner = "{_target_:optuna.pruners.MedianPruner,n_startup_trials:2,n_warmup_steps:0}"
    run_toy(monkeypatch, sweep_dir, "hydra.sweeper.n_trials=3", f"hydra.sweeper.pruner={pruner}")
    trials = load(sweep_dir).trials
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
    ]
    # Epoch 1 of 3 scores x/3: 0.1/3 is below the median of 0.9/3 and 0.8/3, so it stops there.
    assert trials[2].intermediate_values == {1: pytest.approx(0.1 / 3)}
    assert trials[0].intermediate_values == pytest.approx({1: 0.3, 2: 0.6, 3: 0.9})
    assert json.loads((sweep_dir / "2" / "job.json").read_text())["status"] == "pruned"


def test_a_resumed_seeded_sampler_draws_new_parameters(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "search"
    run_toy(monkeypatch, sweep_dir, "hydra.sweeper.n_trials=2")
    run_toy(monkeypatch, sweep_dir, "hydra.sweeper.n_trials=4")
    xs = [t.params["x"] for t in load(sweep_dir).trials]
    assert len(xs) == len(set(xs)) == 4


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    fixed, space = search_space(
        [
            "loss.margin=interval(0.01, 0.5)",
            "optimizer.lr=tag(log, interval(1e-5, 1e-2))",
            "batch_size=tag(int, interval(16, 128))",
            "model.embedder.out_features=range(32, 129, 32)",
            "optimizer=choice(adam, sgd)",
            "loss=triplet,contrastive",
            "epochs=3",
        ]
    )
    assert fixed == ["epochs=3"]
    assert space == {
        "loss.margin": FloatDistribution(0.01, 0.5),
        "optimizer.lr": FloatDistribution(1e-5, 1e-2, log=True),
        "batch_size": IntDistribution(16, 128),
        "model.embedder.out_features": IntDistribution(32, 128, step=32),
        "optimizer": CategoricalDistribution(["adam", "sgd"]),
        "loss": CategoricalDistribution(["triplet", "contrastive"]),
    }
    assert search_space(["x=range(0, 1, 0.25)"])[1]["x"] == FloatDistribution(0, 0.75, step=0.25)


def test_a_journal_file_holds_the_study_for_workers_on_a_shared_filesystem(tmp_path, monkeypatch):
    journal = tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    storage = f"hydra.sweeper.storage=journal:{journal}"
    run_toy(monkeypatch, tmp_path / "a", storage, "hydra.sweeper.n_trials=2")
    run_toy(
        monkeypatch,
        tmp_path / "b",
        storage,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.study_name=a",
    )
    backend = optuna.storages.journal.JournalFileBackend(str(journal))
    study = optuna.load_study(study_name="a", storage=optuna.storages.JournalStorage(backend))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert len({t.params["x"] for t in study.trials}) == 3
