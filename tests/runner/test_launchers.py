"""hydra/launcher=submitit_local: a sweep's jobs run in their own processes through
hydra-submitit-launcher (the plugin behind hydra/launcher=slurm) and reach the results of the
same runs in this process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metric_runner.runner.cli import compose_config, run

pytestmark = pytest.mark.slow
REPOSITORY = Path(__file__).resolve().parents[2]
OVERRIDES = ["epochs=1", "model=mlp", "self_supervised=null"]


def test_submitit_local_runs_a_two_job_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), env.get("PYTHONPATH", "")])
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "metric_runner",
            "-m",
            "hydra/launcher=submitit_local",
            "seed=0,1",
            *OVERRIDES,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # two submitit jobs
    jobs = [
        [json.loads(line) for line in (sweep / str(n) / "metrics.jsonl").read_text().splitlines()]
        for n in (0, 1)
    ]
    assert [[r["epoch"] for r in job] for job in jobs] == [[0, 1], [0, 1]]
    assert jobs[0][1]["train_loss"] != jobs[1][1]["train_loss"]  # seeds 0 and 1
    here = run(compose_config(["seed=1", *OVERRIDES]), tmp_path / "here")
    assert jobs[1] == here
