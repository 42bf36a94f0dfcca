"""The grid sweeper's work (imported when a sweep starts, so that Hydra's plugin discovery
in every Hydra app stays light)."""

import shlex
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from metric_runner.runner.registry import ConfigError
from metric_runner.runner.sweep import SWEEP_LOG, check_sweep_jobs, read_job


def sweep(sweeper, arguments):
    """GridSweeper.sweep: check every job, launch them all, report the counts."""
    loader = sweeper.hydra_context.config_loader
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(
        [*sweeper._parse_config(), *arguments]
    )
    sweeper.overrides = sweeper.split_arguments(overrides, sweeper.max_batch_size)
    jobs = [job for batch in sweeper.overrides for job in batch]
    try:
        skipped = check_sweep_jobs(loader, sweeper.config, jobs, sweeper.check)
    except ConfigError as error:
        print(f"metric-run: error: {error}", file=sys.stderr)
        sys.exit(2)
    sweep_dir = Path(sweeper.config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")
    returns, first = [], 0
    while not sweeper.is_done():
        batch = sweeper.get_job_batch()
        returns.append(sweeper.launcher.launch(batch, initial_job_idx=first))
        first += len(batch)
    report_counts([r for results in returns for r in results], set(skipped), sweep_dir)
    return returns


def report_counts(results, skipped, sweep_dir):
    failed = [r for r in results if r.status == JobStatus.FAILED]
    done = len(results) - len(failed) - len(skipped)
    print(
        f"\nsweep: {done} done, {len(failed)} failed, {len(skipped)} skipped "
        f"({sweep_dir / SWEEP_LOG})"
    )
    for result in failed:
        print(f"  failed: {shlex.join(result.overrides)}: {failure_reason(result)}")
    if failed:
        sys.exit(1)


def failure_reason(result):
    """The job's recorded one-line reason (job.json), else the exception's first line."""
    run_dir = result.hydra_cfg.hydra.runtime.output_dir if result.hydra_cfg else None
    job = read_job(run_dir) if run_dir else None
    if job and job.get("reason"):
        return job["reason"]
    error = result._return_value  # the launcher keeps the job's exception here
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
