"""`torchrun --nproc_per_node=2 -m metric_runner ...` on the digits (gloo, CPU): the same
metrics as one process on the same global batches; a run killed with SIGKILL and resumed
under torchrun ends exactly as an uninterrupted one."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metric_runner.runner.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
REPOSITORY = Path(__file__).resolve().parents[2]
# No self-supervised term (its augmentations are drawn per process) and no batchnorm (its
# statistics are per process): what is left is the same computation, summed in another order.
OVERRIDES = ["model=mlp", "self_supervised=null", "epochs=3"]
# One process vs two: float sums in another order (measured: MAP@R within 4e-7, losses 1e-8).
TOLERANCE = 1e-4


def command(processes, *arguments):
    if processes == 1:
        return [sys.executable, "-m", "metric_runner", *arguments]
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun is not installed")
    return [
        torchrun,
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "metric_runner",
        *arguments,
    ]


def environment():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), env.get("PYTHONPATH", "")])
    return env


def metric_run(processes, *arguments, cwd):
    result = subprocess.run(
        command(processes, *arguments),
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    result = metric_run(2, *OVERRIDES, "hydra.run.dir=two", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "two"


def test_two_processes_reach_the_metrics_of_one_on_the_same_global_batches(
    two_process_run, tmp_path
):
    result = metric_run(1, *OVERRIDES, "hydra.run.dir=one", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = records(tmp_path / "one"), records(two_process_run)
    assert [r["epoch"] for r in two] == [0, 1, 2, 3]
    assert [r["global_step"] for r in two] == [0, 11, 22, 33]  # 704 // 64 global batches
    assert two[0]["accuracies"] == one[0]["accuracies"]  # the same untrained model
    for single, double in zip(one[1:], two[1:]):
        assert double["lr"] == single["lr"]
        assert double["train_loss"] == pytest.approx(single["train_loss"], rel=TOLERANCE)
        for split, metrics in single["accuracies"].items():
            assert double["accuracies"][split] == pytest.approx(metrics, abs=TOLERANCE)
    # Training moved the model: the comparison is not between two untrained models.
    assert two[-1]["accuracies"]["val"]["mean_average_precision_at_r"] > 0.8
    # Rank 0 alone wrote the run directory, Hydra's files included.
    assert (two_process_run / ".hydra" / "overrides.yaml").is_file()
    assert len(list(two_process_run.glob("events.out.tfevents.*"))) == 1


def test_a_run_killed_mid_way_resumes_under_torchrun_to_the_same_end(two_process_run, tmp_path):
    run_dir = tmp_path / "killed"
    killed = subprocess.Popen(
        command(2, *OVERRIDES, f"hydra.run.dir={run_dir}"),
        cwd=tmp_path,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: torchrun and both workers
    )
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not (last.is_file() and load_checkpoint(last)["epoch"] >= 1):
        assert killed.poll() is None and time.monotonic() < deadline, "the run never got going"
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert load_checkpoint(last)["epoch"] < 3  # killed before the end

    result = metric_run(2, f"resume={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert records(run_dir) == records(two_process_run)  # bit for bit
