"""metric-run: compose the Hydra config, check it, then train or test.

    metric-run                                        # the embedded default run on the digits
    metric-run loss=triplet miner=multisimilarity loss.margin=0.1
    metric-run mode=test checkpoint=RUN_DIR           # evaluate a saved model only
    metric-run resume=RUN_DIR                         # continue an interrupted run
    metric-run --list [losses miners ...]             # every component, its arguments and defaults

Mistakes in the config (unknown names or arguments, missing data, unusable checkpoints) end the
run with one line on stderr and a non-zero exit code, before any run directory is written when
they can be found from the config alone.
"""

import logging
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..datasets.base_dataset import DatasetError
from .callbacks.hooks import Callback
from .checkpoint import CheckpointError
from .components import RunError, check_config, pick_device
from .evaluate import checked_test_config, evaluate_checkpoint, forced_section_keys
from .help import help_text
from .processes import Processes, join_process_group, launched_processes, rank0_value
from .registry import CONF_DIR, ConfigError, closest, listing, parse
from .sweep import TrialReporting, run_job
from .train import data_error_line, train

# A DatasetError of its own: a file changed or deleted since the dataset was built (mode=test).
EXIT_CODES = {ConfigError: 2, CheckpointError: 1, RunError: 1, DatasetError: 1}
# Overrides that pick a run to continue or evaluate, never replayed from a saved run.
NOT_REPLAYED = ("resume", "checkpoint", "mode")
# Hydra leaves a resumed run's .hydra/ as the run began; its job logging appends the resumed
# part to the run's metric-run.log (logging.FileHandler's mode "a").
QUIET_HYDRA = ("hydra.output_subdir=null",)
# Processes other than rank 0 under torchrun: rank 0 writes and logs for all.
SILENT_HYDRA = ("hydra.output_subdir=null", "hydra/job_logging=disabled")
# What Hydra (and the job record) put into a run directory before the run itself writes.
BEFORE_THE_RUN = {".hydra", "metric-run.log", "job.json"}
# Run directories that existed before this process started Hydra: never removed on a failure.
EARLIER_RUN_DIRS = set()
# The runner's messages; Hydra's job logging sends them to the console and metric-run.log.
logger = logging.getLogger("metric_runner")


def run(
    cfg: DictConfig,
    run_dir: str | Path,
    callbacks: Iterable[Callback] = (),
    on_built: Callable[[Any], None] | None = None,
) -> list[dict] | dict[str, Any]:
    """Train or test as `cfg.mode` says, writing into `run_dir`; `callbacks` and `on_built`
    go to `train` (more behaviour on the trainer's hooks; a look at the built parts)."""
    if cfg.mode == "test":
        return evaluate_checkpoint(cfg, run_dir)
    return train(cfg, run_dir, [*callbacks, *configured_callbacks(cfg)], on_built)


def configured_callbacks(cfg: DictConfig) -> list[Callback]:
    """The `callbacks:` config key: Callback classes by `_target_` (import path) and arguments."""
    return [
        parse("callback", block, f"callbacks[{i}]").build()
        for i, block in enumerate(cfg.get("callbacks") or [])
    ]


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config metric-run runs with these command-line overrides (Hydra's compose API).
    Raises ConfigError with a one-line explanation of a bad override."""
    overrides = translate_null_groups(overrides)
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="metric-run"):
            return compose(config_name="config", overrides=overrides)
    except Exception as error:  # Hydra reports override mistakes with several exception types
        raise ConfigError(explain_override_error(error, overrides)) from None


def main() -> None:
    arguments = sys.argv[1:]
    try:
        if "--help" in arguments or "-h" in arguments:
            print(help_text())
            return
        if "--list" in arguments:
            print(listing([a for a in arguments if a != "--list"]))
            return
        arguments = prepare(arguments)
        arguments = with_shared_run_dir(arguments, launched_processes())
    except tuple(EXIT_CODES) as error:
        exit_with(error)
    remember_earlier_run_dir(arguments)
    sys.argv = [sys.argv[0], *arguments]
    hydra_app()


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_app(cfg: DictConfig) -> float | None:
    """One run, or one job of a sweep (its bookkeeping: sweep.run_job); returns the monitored
    score, so any Hydra sweeper can optimise it."""
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        warn_about_ignored_amp(cfg)
        logger.info("%s run in %s", cfg.mode, run_dir)
        score = run_job(cfg, run_dir, partial(run, callbacks=[TrialReporting()]))
        logger.info("%s run finished; monitored score: %s", cfg.mode, score)
        return score
    except tuple(EXIT_CODES) as error:
        log_to_files(logging.ERROR, error_line(error))
        remove_unstarted_run_dir(cfg, Path(run_dir))
        close_progress_bars()
        exit_with(error)
    except KeyboardInterrupt:
        hint = f"; continue with: metric-run resume={run_dir}" if cfg.mode == "train" else ""
        print(f"\nmetric-run: interrupted{hint}", file=sys.stderr)
        sys.exit(130)


def exit_with(error: Exception) -> NoReturn:
    print(f"metric-run: error: {error_line(error)}", file=sys.stderr)
    sys.exit(exit_code(error))


def close_progress_bars() -> None:
    """Clears the bars an error stopped midway (the tester's "embedding splits"), which would
    otherwise stay on the console with the error line printed after them on the same line."""
    for bar in list(tqdm._instances):  # tqdm's own registry of open bars
        bar.close()


def error_line(error: Exception) -> str:
    return data_error_line(error) if isinstance(error, DatasetError) else str(error)


def exit_code(error: Exception) -> int:
    """As the README documents: 2 for a config mistake, 1 for data, checkpoint and NaN
    problems (a dataset's own error reaches here wrapped in the ConfigError of its config)."""
    if isinstance(error.__cause__ or error.__context__, DatasetError):
        return 1
    return next(code for kind, code in EXIT_CODES.items() if isinstance(error, kind))


def warn_about_ignored_amp(cfg: DictConfig) -> None:
    if cfg.get("amp") and pick_device(cfg.device).type != "cuda":
        logger.warning("amp=true is ignored: mixed precision runs on CUDA only")


def log_to_files(level: int, message: str) -> None:
    """`message` into the log files only: the console gets it once, on stderr, from exit_with."""
    record = logger.makeRecord(logger.name, level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def remember_earlier_run_dir(arguments: Sequence[str]) -> None:
    given = override_value(arguments, "hydra.run.dir")
    if given and Path(given.strip("'")).expanduser().exists():
        EARLIER_RUN_DIRS.add(Path(given.strip("'")).expanduser().resolve())


def remove_unstarted_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """A single run that failed before writing anything leaves no directory behind; a sweep
    keeps its jobs' failure records, a resumed or earlier run its directory."""
    if HydraConfig.get().mode != RunMode.RUN or cfg.get("resume"):
        return
    if run_dir.resolve() in EARLIER_RUN_DIRS or not run_dir.is_dir():
        return
    if {p.name for p in run_dir.iterdir()} <= BEFORE_THE_RUN:
        shutil.rmtree(run_dir, ignore_errors=True)


def prepare(arguments: Sequence[str]) -> list[str]:
    """Command-line overrides as Hydra should get them, checked first when that is possible.

    `group=null` becomes Hydra's `~group`; `resume=RUN_DIR` replays that run's overrides and
    writes into its directory. With Hydra flags (-m, --cfg, ...) Hydra gets the rest as is.
    """
    arguments = translate_null_groups(arguments)
    if any(a.startswith("-") for a in arguments):
        return with_default_sweeper(arguments)
    resume = override_value(arguments, "resume")
    if resume not in (None, "null"):
        arguments = resume_arguments(Path(resume).expanduser(), arguments)
    else:
        check_new_run_dir(override_value(arguments, "hydra.run.dir"))
    if override_value(arguments, "mode") == "test":
        arguments = forced_section_keys(arguments)
    task_overrides = [a for a in arguments if not is_hydra_setting(a)]
    cfg = compose_config(task_overrides)
    if cfg.mode == "test":
        checked_test_config(cfg, task_overrides, report=False)
    else:
        check_config(cfg)
    return arguments


def with_default_sweeper(arguments: list[str]) -> list[str]:
    """A multirun goes through our grid sweeper (every job checked before the first starts,
    failed jobs recorded, finished ones skipped on a re-run) unless the user or an
    `hparams_search` preset picks a sweeper. The root config cannot select it itself: its
    override of hydra/sweeper would win over the one inside the preset."""
    multirun = "-m" in arguments or "--multirun" in arguments
    chosen = any(
        key_of(a).lstrip("+~") in ("hydra/sweeper", "hparams_search")
        for a in arguments
        if not a.startswith("-")
    )
    return [*arguments, "hydra/sweeper=grid"] if multirun and not chosen else arguments


def resume_arguments(run_dir: Path, arguments: Sequence[str]) -> list[str]:
    """The resumed run's own overrides (so `metric-run resume=DIR` needs nothing else), then
    these, then: write into that directory, leave its .hydra/ files as they are and append to
    its metric-run.log.
    `epochs` is the run's latest (its config.yaml), so an extended run stays extended."""
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        raise ConfigError(
            f"resume: {run_dir} is not a metric-run run directory (no checkpoints/last.pt)"
        )
    saved_path = run_dir / ".hydra" / "overrides.yaml"
    saved = list(OmegaConf.load(saved_path)) if saved_path.is_file() else []
    given = {key_of(a) for a in arguments}
    replayed = [a for a in saved if key_of(a) not in given and key_of(a) not in NOT_REPLAYED]
    latest = run_dir / "config.yaml"
    if "epochs" not in given and latest.is_file():
        epochs = OmegaConf.load(latest).get("epochs")
        replayed = [a for a in replayed if key_of(a) != "epochs"] + [f"epochs={epochs}"]
    return [
        *replayed,
        *arguments,
        f"hydra.run.dir={quote(run_dir.resolve())}",
        *QUIET_HYDRA,
    ]


def with_shared_run_dir(arguments: list[str], processes: Processes) -> list[str]:
    """Under torchrun every process writes into rank 0's run directory (Hydra names its default
    after the time, to the microsecond: different in each process); only rank 0 writes Hydra's
    files and log there."""
    if not processes.distributed or any(a.startswith("-") for a in arguments):
        return arguments
    join_process_group(processes)
    given = override_value(arguments, "hydra.run.dir")
    run_dir = rank0_value(processes, lambda: given or default_run_dir(arguments))
    shared = [] if given else [f"hydra.run.dir={quote(run_dir)}"]
    if not processes.is_main:
        keys = {key_of(a) for a in arguments}
        shared += [o for o in SILENT_HYDRA if key_of(o) not in keys]
    return [*arguments, *shared]


def default_run_dir(arguments: Sequence[str]) -> str:
    task_overrides = [a for a in arguments if not is_hydra_setting(a)]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="metric-run"):
        cfg = compose("config", overrides=task_overrides, return_hydra_config=True)
    return str(Path(cfg.hydra.run.dir).resolve())


def check_new_run_dir(run_dir: str | None) -> None:
    if run_dir and (Path(run_dir) / "checkpoints").exists():
        raise ConfigError(
            f"hydra.run.dir: {run_dir} already holds a run; continue it with resume={run_dir} "
            "or choose a new directory"
        )


def translate_null_groups(overrides: Iterable[str]) -> list[str]:
    """`miner=null` -> `~miner`: Hydra removes a group from the defaults list with `~`."""
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    return [
        f"~{key_of(o)}" if key_of(o) in groups and o.endswith("=null") and o[0] != "~" else o
        for o in overrides
    ]


def is_hydra_setting(override: str) -> bool:
    """Hydra's own settings, which the config check does not compose; the search path is not
    one of them: it says where the config groups are."""
    key = key_of(override)
    return key.split("/")[0].split(".")[0] == "hydra" and key != "hydra.searchpath"


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def override_value(overrides: Iterable[str], key: str) -> str | None:
    values = [o.split("=", 1)[1] for o in overrides if "=" in o and key_of(o) == key]
    return values[-1] if values else None


def quote(path: str | Path) -> str:
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def explain_override_error(error: Exception, overrides: Sequence[str]) -> str:
    message = str(error).strip()
    missing = re.search(r"Could not find '([^']+)/([^']+)'", message)
    if isinstance(error, MissingConfigException) and missing:
        group, option = missing.groups()
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        return (
            f"{group}: no config {option!r} in conf/{group}/{closest(option, options)} "
            f"(options: {', '.join(options)})"
        )
    full_key = getattr(error.__cause__, "full_key", None)
    if full_key:
        return unknown_key_message(full_key, overrides)
    if isinstance(error, OverrideParseException):
        return f"cannot parse the overrides: {message.splitlines()[0]}"
    return message.splitlines()[0]


def unknown_key_message(full_key: str, overrides: Sequence[str]) -> str:
    """`loss.margn=0.1` -> the valid keys next to it, closest first."""
    parent_path, _, key = full_key.rpartition(".")
    groups = [o for o in overrides if "." not in key_of(o) and o[0] != "+"]
    try:
        parent = compose_config([o for o in groups if key_of(o) != full_key])
        for part in filter(None, parent_path.split(".")):
            parent = parent[part]
        valid = [str(k) for k in parent.keys()]
    except Exception:  # the parent itself is unknown: no suggestion
        valid = []
    return (
        f"{full_key}: no such config key{closest(key, valid)} "
        f"(keys here: {', '.join(valid) or 'none'}; add a new key with +{full_key}=...)"
    )


if __name__ == "__main__":
    main()
