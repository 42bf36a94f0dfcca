"""The bookkeeping that lets a sweep survive its jobs: every job leaves `job.json` in its
directory (status, one-line reason, command, config hash, score, environment) and one line in
the sweep's `sweep.jsonl`.

In a multirun, re-running the same sweep (same `hydra.sweep.dir`) skips a finished job with the
same config, resumes an interrupted or failed one from its `last.pt`, and refuses a job whose
directory holds another config. A failing job raises JobFailed, which Hydra's launchers record
as a failed job instead of stopping the sweep. The job returns its monitored score, so any
sweeper can optimise it.

An Optuna trial running in a job receives each evaluation's score through
`report_evaluation(epoch, score)`, which raises optuna.TrialPruned when the pruner says stop.
"""

import contextlib
import contextvars
import datetime
import functools
import hashlib
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from .callbacks.hooks import Callback
from .checkpoint import RUN_CONTROL_KEYS
from .components import pick_device
from .processes import launched_processes
from .registry import ConfigError
from .report import environment
from .run_log import write_atomically
from .state import TrainingState

JOB_FILE = "job.json"
SWEEP_LOG = "sweep.jsonl"
# How our Optuna sweeper hands a trial to its job (set per job through hydra.job.env_set, so
# it reaches jobs a launcher runs in other processes or on other machines).
TRIAL_ENV = {
    "storage": "METRIC_RUNNER_OPTUNA_STORAGE",
    "study": "METRIC_RUNNER_OPTUNA_STUDY",
    "trial_id": "METRIC_RUNNER_OPTUNA_TRIAL_ID",
    "pruner": "METRIC_RUNNER_OPTUNA_PRUNER",  # JSON of its _target_ block; "" = Optuna's default
}
ACTIVE_TRIAL = contextvars.ContextVar("metric_runner_optuna_trial", default=None)
# Config hashes by job directory, from the pre-check of a sweep whose launcher runs the checked
# configs in this process: the job does not hash its config a second time.
PRECHECKED_HASHES: dict[str, str] = {}
# Keys that metric-run's check (components.check_config: components and run settings) does not
# read: the jobs of a sweep over seeds are checked once.
NOT_CHECKED = ("seed",)


class JobFailed(RuntimeError):
    """A sweep job that failed; its one-line reason is in the job's job.json."""


class Job:
    """Where a job runs and how it was launched (from Hydra's runtime config)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.multirun, self.sweep_dir, self.number, self.overrides = False, None, None, []
        # Under torchrun (or a SLURM job of several tasks) every process runs the job; rank 0
        # keeps its records.
        self.records = launched_processes().is_main
        if HydraConfig.initialized():
            hydra = HydraConfig.get()
            self.multirun = hydra.mode == RunMode.MULTIRUN
            self.sweep_dir = Path(hydra.sweep.dir) if self.multirun else None
            self.number = hydra.job.get("num") if self.multirun else None
            self.overrides = list(hydra.overrides.task)

    @property
    def command(self) -> str:
        return shlex.join(["metric-run", *self.overrides])

    def save(self, record: dict) -> None:
        if self.records:
            write_job(self.run_dir, record)

    def log(self, status: str, **details: Any) -> None:
        """One line in the sweep's sweep.jsonl (appends are atomic for lines this short)."""
        if self.sweep_dir is None or not self.records:
            return
        line = {"job": self.number, "dir": self.run_dir.name, "status": status, **details}
        line["overrides"] = self.overrides
        with (self.sweep_dir / SWEEP_LOG).open("a") as file:
            file.write(json.dumps(line) + "\n")


def run_job(
    cfg: DictConfig, run_dir: str | os.PathLike, run: Callable[[DictConfig, str], Any]
) -> float | None:
    """`run(cfg, run_dir)` with the job's bookkeeping; returns the monitored score."""
    job = Job(run_dir)
    previous = read_job(run_dir) or {}
    if previous and not (job.multirun or cfg.resume):
        return run(cfg, run_dir)  # the runner refuses a used run directory; leave its record
    prechecked = PRECHECKED_HASHES.pop(os.path.abspath(run_dir), None) if job.multirun else None
    digest = prechecked or job_hash(cfg)
    if job.multirun:
        refuse_changed_config(previous, digest, run_dir, job.overrides)
        if is_finished(previous, cfg):
            job.log("skipped", score=previous.get("score"))
            print(f"metric-run: {run_dir} finished before (score {previous.get('score')}); skipped")
            return previous.get("score")
        if (Path(run_dir) / "checkpoints" / "last.pt").is_file() and not cfg.resume:
            with open_dict(cfg):
                cfg.resume = str(run_dir)  # an interrupted or failed job continues
    record = {
        "status": "running",
        "command": (previous.get("command") if cfg.resume else None) or job.command,
        "config_hash": digest,
        "epochs": cfg.get("epochs"),
        "started": now(),
        "environment": job_environment(cfg),
    }
    job.save(record)
    started = time.perf_counter()
    try:
        with attached_trial():
            result = run(cfg, run_dir)
    except Exception as error:
        failed = previous if previous and isinstance(error, ConfigError) else record
        record_failure_and_raise(job, failed, error, seconds=time.perf_counter() - started)
    score = monitored_score(cfg, result)
    record.update(status="done", score=score, finished=now())
    job.save(record)
    job.log("done", score=score, seconds=round(time.perf_counter() - started, 3))
    return score


def record_failure_and_raise(job: Job, record: dict, error: Exception, seconds: float) -> None:
    """Record the failure; in a multirun raise JobFailed (the launcher records the job as
    failed and the sweep goes on); alone, raise the error as it is. A config the runner
    refused before training (`record` is then the directory's previous one) leaves the
    directory's record as it was."""
    status = "pruned" if type(error).__name__ == "TrialPruned" else "failed"
    reason = one_line(error)
    if record.get("status") == "running":
        record.update(status=status, reason=reason, finished=now())
    job.save(record)
    job.log(status, reason=reason, seconds=round(seconds, 3))
    if job.multirun and status == "failed":
        raise JobFailed(f"{job.run_dir}: {reason}") from error
    raise error


def refuse_changed_config(
    previous: dict, digest: str, run_dir: str | os.PathLike, overrides: Sequence[str]
) -> None:
    if previous.get("config_hash") not in (None, digest):
        raise ConfigError(
            f"job {shlex.join(overrides)}: {run_dir} holds a run of another config; use "
            "another sweep_name (hydra.sweep.dir), or delete that job directory to run it again"
        )


def is_finished(previous: dict, cfg: DictConfig) -> bool:
    """Finished with the same config and at least as many epochs (more epochs continue it)."""
    return previous.get("status") == "done" and (previous.get("epochs") or 0) >= (
        cfg.get("epochs") or 0
    )


def job_hash(cfg: DictConfig) -> str:
    """Hash of what the job trains: its resolved config less the keys that say how to run it
    (checkpoint.RUN_CONTROL_KEYS) and the sweep's name."""
    return digest(OmegaConf.to_container(cfg, resolve=True), (*RUN_CONTROL_KEYS, "sweep_name"))


def digest(container: dict, left_out: Sequence[str] = ()) -> str:
    """A short hash of a resolved config (one to_container of it serves several digests)."""
    kept = {key: value for key, value in container.items() if key not in left_out}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def monitored_score(cfg: DictConfig, result: Any) -> float | None:
    """The best monitored score of a training run's records (or of mode=test's one record)."""
    records = result if isinstance(result, list) else [result]
    split, metric = cfg.early_stopping.split, cfg.early_stopping.metric
    scores = [
        r["accuracies"][split][metric]
        for r in records
        if isinstance(r, dict) and metric in r.get("accuracies", {}).get(split, {})
    ]
    return max(scores) if scores else None


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_job(run_dir: str | os.PathLike) -> dict | None:
    try:
        return json.loads((Path(run_dir) / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_job(run_dir: str | os.PathLike, record: dict) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_atomically(Path(run_dir) / JOB_FILE, json.dumps(record, indent=1) + "\n")


def job_environment(cfg: DictConfig) -> dict:
    info = dict(cached_environment())
    try:
        info["device"] = str(pick_device(cfg.device))
    except ConfigError:  # a bad device is the run's error to report, not the bookkeeping's
        info["device"] = str(cfg.get("device"))
    info["command_line"] = shlex.join(sys.argv)
    return info


@functools.cache
def cached_environment() -> dict:
    """Versions, git state and machine, looked up once per process (jobs of one launcher
    process share them)."""
    return environment()


# ---------------------------------------------------------------- Optuna trials


@functools.cache
def open_storage(url: str) -> Any:
    """An Optuna storage from a URL: any RDB URL (sqlite:///..., postgresql://...), or
    `journal:PATH` for Optuna's journal file (many workers on a shared filesystem). One per
    URL and process: connecting costs a second, and every trial's job needs it."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:") :]))
    return optuna.storages.RDBStorage(url)


@contextlib.contextmanager
def attached_trial() -> Iterator[None]:
    """Make the Optuna trial the sweeper handed to this job (if any) the active one."""
    trial_id = os.environ.get(TRIAL_ENV["trial_id"])
    if trial_id is None:
        yield
        return
    import optuna

    pruner = os.environ.get(TRIAL_ENV["pruner"])
    study = optuna.load_study(
        study_name=os.environ[TRIAL_ENV["study"]],
        storage=open_storage(os.environ[TRIAL_ENV["storage"]]),
        pruner=instantiate(json.loads(pruner)) if pruner else None,
    )
    token = ACTIVE_TRIAL.set(optuna.trial.Trial(study, int(trial_id)))
    try:
        yield
    finally:
        ACTIVE_TRIAL.reset(token)


def report_evaluation(epoch: int, score: float | None) -> None:
    """Hand one evaluation's monitored score to the running Optuna trial, if there is one;
    raises optuna.TrialPruned when its pruner says the trial will not pay off."""
    trial = ACTIVE_TRIAL.get()
    if trial is None or score is None or not math.isfinite(score):
        return
    trial.report(float(score), step=int(epoch))
    if trial.should_prune():
        import optuna

        raise optuna.TrialPruned(f"pruned at epoch {epoch} (score {score:.4f})")


# ---------------------------------------------------------------- before the first job


def check_sweep_jobs(
    config_loader: ConfigLoader,
    master_config: DictConfig,
    jobs: Sequence[Sequence[str]],
    check: str | None,
    numbered: bool = True,
    keep: Callable[[Sequence[str], DictConfig], None] | None = None,
) -> list[int]:
    """Compose every job's config (its overrides on top of the sweep's) and check it with
    `check` (a function's dotted path, such as metric-run's registry check
    metric_runner.runner.components.check_config; None: compose only) and, for `numbered`
    jobs (job i runs in the sweep's i-th directory), against what its job directory already
    holds. Jobs whose configs differ only in NOT_CHECKED keys are checked once.
    `keep(overrides, config)` receives each checked job's full config (Hydra's node
    included), so a launcher in this process can run it without composing it again; the job
    then finds its config hash in PRECHECKED_HASHES. Returns the numbers of the jobs that
    finished before (the re-run skips them). Raises ConfigError naming the first bad job."""
    check_config = get_method(check) if check else (lambda cfg: None)

    PRECHECKED_HASHES.clear()
    finished, checked = [], set()
    saved_hydra = HydraConfig.instance().cfg
    try:
        for number, overrides in enumerate(jobs):
            try:
                cfg, run_dir = compose_job(config_loader, master_config, overrides, number)
                container = task_container(cfg)
                if (check_key := digest(container, NOT_CHECKED)) not in checked:
                    check_config(without_hydra(cfg))
                    checked.add(check_key)
                previous = (read_job(run_dir) if numbered else None) or {}
                config_hash = digest(container, (*RUN_CONTROL_KEYS, "sweep_name"))
                refuse_changed_config(previous, config_hash, run_dir, overrides)
            except ConfigError as error:
                message = str(error)
                if not message.startswith("job "):
                    message = f"job {shlex.join(overrides)}: {message}"
                raise ConfigError(message) from None
            if is_finished(previous, cfg):
                finished.append(number)
            if keep and numbered:
                keep(overrides, cfg)
                PRECHECKED_HASHES[os.path.abspath(run_dir)] = config_hash
    finally:
        HydraConfig.instance().cfg = saved_hydra
    return finished


def compose_job(
    config_loader: ConfigLoader, master_config: DictConfig, overrides: Sequence[str], number: int
) -> tuple[DictConfig, Path]:
    """(the job's full config, its directory) as the launcher will make them."""
    from .cli import explain_override_error  # cli imports this module

    try:
        cfg = config_loader.load_sweep_config(master_config, list(overrides))
    except Exception as error:  # Hydra reports override mistakes with several exception types
        raise ConfigError(explain_override_error(error, list(overrides))) from None
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.job.num = number
    # For ${hydra:...} in the job's config: HydraConfig.get() is cfg.hydra. Not set_config,
    # which copies Hydra's node (a tenth of the launch) and makes it read-only; the launcher
    # fills in the job's id and sets its own copy when the job starts.
    HydraConfig.instance().cfg = cfg
    run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
    return cfg, run_dir


def task_container(cfg: DictConfig) -> dict:
    """The job's resolved config as its task function gets it (Hydra's node left out), in
    plain dicts and lists: each key converted where it is, resolving against the whole config,
    instead of converting a copy (copying is two thirds of the cost)."""
    container = {}
    for key in cfg:
        if key == "hydra":
            continue
        if OmegaConf.is_missing(cfg, key):
            container[key] = "???"  # as to_container writes a missing value
            continue
        value = cfg[key]
        container[key] = (
            OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        )
    return container


def without_hydra(cfg: DictConfig) -> DictConfig:
    """The job's config as its task function gets it (Hydra's node left out), without copying
    the whole config as Hydra does when the job starts; ${now:...} keeps its composed value)."""
    task_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    OmegaConf.copy_cache(from_config=cfg, to_config=task_cfg)
    return task_cfg


class TrialReporting(Callback):
    """Hands each evaluation's monitored score to the attached Optuna trial (pruning); does
    nothing outside an Optuna search."""

    def on_epoch_end(self, state: TrainingState) -> None:
        if state.evaluated:
            report_evaluation(state.record["epoch"], state.score)
