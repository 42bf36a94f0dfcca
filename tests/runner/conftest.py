"""A finished one-epoch run of the default config, shared by the runner tests that need one."""

import pytest

from metric_runner.runner.cli import compose_config, run


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """(run directory, metrics.jsonl records) of `metric-run epochs=1`."""
    run_dir = tmp_path_factory.mktemp("runs") / "default"
    records = run(compose_config(["epochs=1"]), run_dir)
    return run_dir, records
