"""Data that breaks after the dataset was built (a truncated or deleted image) stops metric-run
with one line naming the file, exit code 1 and that line in metric-run.log, also when a
DataLoader worker read it; and a resumed run appends to its run's metric-run.log."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from metric_runner.datasets import CorruptImageError, DatasetNotFoundError, ZeroShotSplit
from metric_runner.runner import cli
from metric_runner.runner.callbacks import Callback
from metric_runner.runner.train import data_error_line
from tests.datasets import fixtures
from tests.runner.test_cli import REPOSITORY, metric_run_process

TINY = {"crop_size": 8, "resize": 10}
QUICK = ["transform=tiny", "epochs=1", "max_batches_per_epoch=1", "batch_size=8", "sampler.m=2"]
TRAIN_CLASSES, TEST_CLASSES = [*range(1, 9)], [*range(101, 105)]


@pytest.fixture
def cub_root(tmp_path):
    """A fresh tiny CUB per test: the tests damage its files."""
    return fixtures.make_cub(
        tmp_path / "cub", class_ids=[*TRAIN_CLASSES, *TEST_CLASSES], images_per_class=2
    )


def image_path(root, class_id, index=0):
    folder = f"{class_id:03d}.Bird_{class_id}"
    return root / "CUB_200_2011" / "images" / folder / f"Bird_{class_id}_{index}.jpg"


def truncate(path):
    path.write_bytes(path.read_bytes()[:200])  # the header survives, the scan data does not


class DamageImages(Callback):
    """Truncates or deletes the files matching `pattern` when training begins
    (`after_epoch=None`) or at the end of epoch `after_epoch`, after its evaluation."""

    def __init__(self, pattern, action, after_epoch=None):
        self.pattern, self.action, self.after_epoch = pattern, action, after_epoch

    def on_train_begin(self, state):
        if self.after_epoch is None:
            self.damage()

    def on_epoch_end(self, state):
        if state.progress.epoch == self.after_epoch:
            self.damage()

    def damage(self):
        paths = [Path(p) for p in glob.glob(self.pattern)]
        assert paths, self.pattern
        for path in paths:
            truncate(path) if self.action == "truncate" else path.unlink()


def test_the_runners_split_names_a_file_truncated_or_deleted_after_it_was_built(cub_root):
    test_split = ZeroShotSplit("CUB", cub_root, "test", transform=TINY)
    truncated, deleted = (Path(p) for p in test_split.paths[:2])
    truncate(truncated)
    deleted.unlink()
    with pytest.raises(CorruptImageError, match=rf"^cannot load image {truncated} .*corrupt"):
        test_split[0]
    with pytest.raises(DatasetNotFoundError, match=rf"^image {deleted} is missing: restore it"):
        test_split[1]
    assert test_split[2][0].shape == (3, 8, 8)  # the other files still load


def test_a_workers_data_error_comes_back_as_its_class_and_one_line(cub_root, capsys):
    test_split = ZeroShotSplit("CUB", cub_root, "test", transform=TINY)
    truncate(Path(test_split.paths[0]))
    with pytest.raises(CorruptImageError) as caught:
        next(iter(DataLoader(test_split, batch_size=2, num_workers=1)))
    assert "DataLoader worker process 0" in str(caught.value)  # torch's rebuilt message
    line = data_error_line(caught.value)
    assert line.startswith(f"cannot load image {test_split.paths[0]} (") and "\n" not in line
    # Reaching metric-run as it is (mode=test has no epoch to name): that line, exit code 1.
    with pytest.raises(SystemExit) as stopped:
        cli.exit_with(caught.value)
    assert stopped.value.code == 1
    assert capsys.readouterr().err == f"metric-run: error: {line}\n"


def console_run(tmp_path, *arguments):
    """As test_cli.metric_run_process, with stderr kept as written: a progress bar's \r is not
    turned into a line break."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "metric_runner", *arguments],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=300,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def damaged_run(tmp_path, cub_root, num_workers, pattern, action, after_epoch):
    callback = (
        f"callbacks=[{{_target_: {__name__}.DamageImages, pattern: '{pattern}', "
        f"action: {action}, after_epoch: {after_epoch}}}]"
    )
    return console_run(
        tmp_path,
        "dataset=cub",
        f"dataset.root={cub_root}",
        "dataset.num_folds=2",
        "device=cpu",
        f"num_workers={num_workers}",
        *QUICK,
        callback,
        "hydra.run.dir=run",
    )


def assert_stopped_with_one_line(result, run_dir, expected_start):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Error executing job" not in result.stderr
    # One line on the console: what the tester's progress bar drew before it, it erased (\r).
    (line,) = result.stderr.strip().split("\n")
    line = line.rpartition("\r")[2]
    assert line.startswith(f"metric-run: error: {expected_start}"), line
    log = (run_dir / "metric-run.log").read_text()
    assert f"[metric_runner][ERROR] - {line.removeprefix('metric-run: error: ')}\n" in log
    return line


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_training_image_truncated_during_the_run_stops_it_with_one_line(
    tmp_path, cub_root, num_workers
):
    # After epoch 0's evaluation every training-class image is cut short: epoch 1's first
    # batch reads some of them (in a worker process with num_workers=2).
    pattern = str(cub_root / "CUB_200_2011" / "images" / "00?.Bird_?" / "*.jpg")
    result = damaged_run(tmp_path, cub_root, num_workers, pattern, "truncate", 0)
    line = assert_stopped_with_one_line(
        result, tmp_path / "run", "epoch 1, step 1: cannot load image "
    )
    named = line.split("cannot load image ")[1].split(" (")[0]
    assert named in glob.glob(pattern) and "corrupt or truncated: replace or delete it" in line
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == [0]  # the untrained model was evaluated


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_test_image_deleted_before_the_first_evaluation_stops_it_with_one_line(
    tmp_path, cub_root, num_workers
):
    deleted = image_path(cub_root, TEST_CLASSES[0])
    result = damaged_run(tmp_path, cub_root, num_workers, str(deleted), "delete", "null")
    line = assert_stopped_with_one_line(
        result, tmp_path / "run", f"evaluating the untrained model: image {deleted} is missing"
    )
    assert "restore it, or build the dataset again" in line


def log_lines(run_dir):
    return (run_dir / "metric-run.log").read_text().splitlines()


@pytest.mark.slow
def test_a_resumed_run_appends_to_its_metric_run_log(tmp_path):
    run_dir = tmp_path / "run"
    first = metric_run_process(tmp_path, "epochs=2", "model=mlp", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr
    first_part = log_lines(run_dir)
    assert any("train run finished" in line for line in first_part)

    resumed = metric_run_process(tmp_path, f"resume={run_dir}", "epochs=3")
    assert resumed.returncode == 0, resumed.stderr
    lines = log_lines(run_dir)
    assert lines[: len(first_part)] == first_part  # the first part's lines, unchanged
    resumed_part = [line.split("] - ", 1)[1] for line in lines[len(first_part) :]]
    assert resumed_part[0] == f"train run in {run_dir}"
    assert [m for m in resumed_part if m.startswith("TRAINING EPOCH")] == ["TRAINING EPOCH 3"]
    assert [m for m in resumed_part if "run finished" in m] == [resumed_part[-1]]
    assert sum("train run in" in line for line in lines) == 2  # nothing written twice
