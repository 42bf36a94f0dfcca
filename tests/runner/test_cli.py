"""The metric-run command: listing, one-line errors with exit codes, resume, any working folder."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from metric_runner.runner import cli

REPOSITORY = Path(__file__).resolve().parents[2]


def metric_run(monkeypatch, *arguments):
    """Run `metric-run ARGUMENTS` in this process; returns the exit code."""
    monkeypatch.setattr(sys, "argv", ["metric-run", *arguments])
    try:
        cli.main()
    except SystemExit as exit:
        return exit.code
    return 0


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("metric-run: error: ")
    return err


def test_list_prints_every_component_with_arguments_and_defaults(monkeypatch, capsys):
    assert metric_run(monkeypatch, "--list") == 0
    out = capsys.readouterr().out
    for header in ("datasets:", "models:", "losses:", "miners:", "distances:", "reducers:"):
        assert header in out
    for header in ("regularizers:", "samplers:", "optimizers:", "schedulers:", "testers:"):
        assert header in out
    assert "MultiSimilarityMiner(epsilon=0.1" in out
    assert "Digits(split, as_images=True, val_fraction=0.2)" in out
    assert metric_run(monkeypatch, "--list", "lossses") == 2
    assert "no component kind 'lossses'; did you mean losses" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["loss=tripplet"], "loss: no config 'tripplet' in conf/loss/; did you mean triplet"),
        (["epoch=3"], "epoch: no such config key; did you mean epochs?"),
        (
            ["loss=triplet", "loss.margn=0.1"],
            "loss.margn: no such config key; did you mean margin?",
        ),
        (
            ["loss.name=TripletMarginLos"],
            "loss: unknown loss 'TripletMarginLos'; did you mean TripletMarginLoss",
        ),
        (["+loss.margn=1"], "loss: MultiSimilarityLoss has no argument 'margn'"),
        (
            ["miner.distance=cosine_similarty"],
            "miner.distance: unknown distance 'cosine_similarty'; did you mean cosine_similarity",
        ),
        (["optimizer.name=Adamm"], "optimizer: unknown optimizer 'Adamm'; did you mean Adam"),
        (["mode=test"], "checkpoint: mode=test needs checkpoint=PATH"),
        (["mode=tset"], "mode: must be one of train, test"),
        (["resume=/nonexistent/run"], "resume: /nonexistent/run is not a metric-run run directory"),
        (["imports=[no_such_module_here]"], "imports: cannot import 'no_such_module_here'"),
        (
            ["loss=null", "self_supervised=null", "miner=null"],
            "loss: training needs a loss (e.g. loss=triplet), a self-supervised term",
        ),
        (["log_stats=yes"], "log_stats: must be true or false, got 'yes'"),
    ],
)
def test_config_mistakes_stop_with_one_line_before_any_run_directory(
    monkeypatch, capsys, tmp_path, arguments, expected
):
    monkeypatch.chdir(tmp_path)
    assert metric_run(monkeypatch, *arguments) == 2
    assert expected in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def truncated_checkpoint(finished_run, tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes((finished_run[0] / "checkpoints" / "last.pt").read_bytes()[:5000])
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arguments", "expected", "code"),
    [
        (
            ["dataset=image_folder", "dataset.root=/nonexistent/images"],
            "'/nonexistent/images' is not a folder",
            1,
        ),
        (["dataset=image_folder", "dataset.root={empty}"], "holds no images", 1),
        (["sampler.m=200", "batch_size=200"], "sampler.m=200 but training class 0 has only", 1),
        (["mode=test", "checkpoint={truncated}"], "it may be truncated", 1),
        (["mode=test", "checkpoint={run}", "model=mlp"], "holds a different model.trunk", 1),
        (
            ["mode=test", "checkpoint={run}", "model.embedder.out_features=32"],
            "holds a different model.embedder",
            1,
        ),
    ],
)
def test_data_and_checkpoint_problems_stop_with_one_line(
    monkeypatch, capsys, tmp_path, finished_run, truncated_checkpoint, arguments, expected, code
):
    (tmp_path / "empty").mkdir()
    paths = {"empty": tmp_path / "empty", "truncated": truncated_checkpoint, "run": finished_run[0]}
    arguments = [a.format(**paths) for a in arguments]
    before = sorted(p.name for p in finished_run[0].rglob("*"))
    exit_code = metric_run(monkeypatch, *arguments, f"hydra.run.dir={tmp_path / 'new_run'}")
    assert exit_code == code
    assert expected in one_error_line(capsys)
    assert sorted(p.name for p in finished_run[0].rglob("*")) == before
    assert not (tmp_path / "new_run").exists()  # a run that never started leaves no directory


@pytest.mark.slow
def test_interrupted_run_resumes_from_the_command_line(monkeypatch, capsys, tmp_path):
    run_dir = tmp_path / "run"
    interrupt = "callbacks=[{_target_: tests.runner.test_train.InterruptAfterEpoch, epoch: 1}]"
    arguments = ["epochs=2", "model=mlp", f"hydra.run.dir={run_dir}"]
    assert metric_run(monkeypatch, *arguments, interrupt) == 130
    assert f"continue with: metric-run resume={run_dir}" in capsys.readouterr().err
    hydra_files = {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()}

    # Replays epochs=2 model=mlp, and the callback, which has nothing left to interrupt.
    assert metric_run(monkeypatch, f"resume={run_dir}") == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == hydra_files
    assert "| val | mean_average_precision_at_r |" in capsys.readouterr().out


@pytest.mark.slow
def test_metric_run_works_from_any_folder(tmp_path):
    """The installed command finds its configs inside the package, not in the working folder."""
    command = [shutil.which("metric-run")] if shutil.which("metric-run") else None
    env = dict(os.environ)
    if command is None:  # not installed: run the module, with the repository importable
        command = [sys.executable, "-m", "metric_runner.runner.cli"]
        env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), env.get("PYTHONPATH", "")])
    Image.new("RGB", (4, 4)).save(tmp_path / "not_a_dataset.png")  # a folder with unrelated files
    result = subprocess.run(
        [*command, "epochs=1", "model=mlp", "hydra.run.dir=out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out_dir = tmp_path / "out"
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert (out_dir / "summary.md").read_text().split("\n\n", 1)[1] in result.stdout
    assert (out_dir / "checkpoints" / "best.pt").is_file()
    assert (out_dir / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
def test_the_built_package_ships_every_config(tmp_path):
    """conf/ reaches the wheel through the metric_runner/conf link, so installs work anywhere."""
    pytest.importorskip("setuptools")
    source = tmp_path / "source"
    shutil.copytree(
        REPOSITORY,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".*", "build", "dist", "runs", "outputs", "*.egg-info", "__pycache__"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("metric_runner/conf/")}
    expected = {
        f"metric_runner/conf/{p.relative_to(REPOSITORY / 'conf')}"
        for p in (REPOSITORY / "conf").rglob("*.yaml")
    }
    assert "metric_runner/conf/config.yaml" in expected
    assert shipped == expected


@pytest.mark.parametrize(
    ("arguments", "expected_extra"),
    [
        (["-m", "seed=0,1"], ["hydra/sweeper=grid"]),
        (["--multirun", "seed=0,1"], ["hydra/sweeper=grid"]),
        (["-m", "hparams_search=digits_triplet"], []),  # the preset picks optuna
        (["-m", "hydra/sweeper=basic", "seed=0,1"], []),  # the user's choice stands
        (["seed=1", "--cfg", "job"], []),  # not a multirun
    ],
)
def test_a_multirun_gets_the_grid_sweeper_unless_one_is_chosen(arguments, expected_extra):
    assert cli.with_default_sweeper(arguments) == [*arguments, *expected_extra]


@pytest.mark.parametrize(("batch_size", "refused"), [(63, False), (64, True)])
def test_fixed_set_of_triplets_needs_whole_triplets_per_batch(batch_size, refused):
    cfg = cli.compose_config(
        [
            "sampler=fixed_set_of_triplets",
            "miner=embeddings_already_packaged_as_triplets",
            "loss=triplet",
            f"batch_size={batch_size}",
        ]
    )
    if refused:
        with pytest.raises(cli.ConfigError, match="batch_size: .*multiple of 3.*batch_size=63"):
            cli.check_config(cfg)
    else:
        cli.check_config(cfg)


def metric_run_process(tmp_path, *arguments):
    """`python -m metric_runner ARGUMENTS` in tmp_path, on one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "metric_runner", *arguments],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("arguments", "expected", "code"),
    [
        (["dataset=cub", "dataset.root=/nonexistent/cub"], "'/nonexistent/cub' is not a folder", 1),
        (["device=cuda"], "device: cuda requested but no CUDA device is available", 2),
    ],
)
def test_a_run_failing_after_hydra_started_leaves_no_run_directory(
    tmp_path, arguments, expected, code
):
    if "device=cuda" in arguments and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = metric_run_process(tmp_path, *arguments, "hydra.run.dir=runs/new")
    assert result.returncode == code, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("metric-run: error: ") and expected in line
    assert not (tmp_path / "runs" / "new").exists()


def test_a_failing_run_never_removes_an_earlier_directory(tmp_path):
    earlier = tmp_path / "earlier"
    (earlier / ".hydra").mkdir(parents=True)
    (earlier / "metric-run.log").write_text("an earlier run's line\n")
    result = metric_run_process(
        tmp_path, "dataset=cub", "dataset.root=/nonexistent/cub", f"hydra.run.dir={earlier}"
    )
    assert result.returncode == 1, result.stderr
    assert (earlier / "metric-run.log").read_text().startswith("an earlier run's line\n")


@pytest.mark.slow
def test_the_run_log_holds_the_runs_lines_and_amp_on_cpu_is_reported_once(tmp_path):
    result = metric_run_process(
        tmp_path, "epochs=1", "model=mlp", "amp=true", "device=cpu", "hydra.run.dir=out"
    )
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "out" / "metric-run.log").read_text()
    warning = "amp=true is ignored: mixed precision runs on CUDA only"
    assert log.count(warning) == 1 and result.stdout.count(warning) == 1
    assert "[metric_runner][INFO] - train run in " in log
    assert "train run finished; monitored score: 0." in log
    assert "| val | mean_average_precision_at_r |" in result.stdout  # the table stays on stdout


def test_a_value_left_to_the_user_is_named_before_the_run(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["metric-run", "dataset=csv"])  # csv: root is the user's
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "metric-run: error: dataset.root: no value given; add dataset.root=... to the command line"
    ]
    assert list(tmp_path.iterdir()) == []  # no run directory
