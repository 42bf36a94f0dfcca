"""The optuna sweeper's work (imported when a search starts, so that Hydra's plugin
discovery in every Hydra app stays light)."""

import json
import math
import os
import shlex
import socket
import sys
import warnings
from pathlib import Path

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.metric_runner_sweeper.grid_sweeper import DEFAULT_CHECK
from metric_runner.runner.registry import ConfigError
from metric_runner.runner.sweep import (
    TRIAL_ENV,
    check_sweep_jobs,
    open_storage,
    read_job,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
INTERRUPTED = "interrupted"


class OptunaSearch:
    def __init__(
        self,
        direction="maximize",
        n_trials=20,
        n_jobs=1,
        study_name=None,
        storage=None,
        sampler=None,
        pruner=None,
        params=None,
        check=DEFAULT_CHECK,
        plots=True,
    ):
        self.direction, self.n_trials, self.n_jobs = direction, n_trials, n_jobs
        self.study_name, self.storage_url = study_name, storage
        self.sampler_conf, self.pruner_conf = sampler, pruner
        self.params = dict(params or {})
        self.check, self.plots = check, plots

    def setup(self, *, hydra_context, task_function, config):
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.study_name = self.study_name or self.sweep_dir.name
        self.storage_url = self.storage_url or f"sqlite:///{self.sweep_dir.resolve()}/optuna.db"

    def sweep(self, arguments):
        try:
            params = [f"{key}={value}" for key, value in self.params.items()]
            fixed, space = search_space([*params, *arguments])
            jobs = corners(fixed, space)
            check_sweep_jobs(
                self.hydra_context.config_loader, self.config, jobs, self.check, numbered=False
            )
        except ConfigError as error:
            print(f"metric-run: error: {error}", file=sys.stderr)
            sys.exit(2)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        study = self.load_study()
        settle_orphaned_trials(study, self.sweep_dir)
        while (remaining := self.n_trials - len(counted_trials(study))) > 0:
            trials = [ask(study, space) for _ in range(min(self.n_jobs, remaining))]
            self.run_trials(study, trials, fixed)
        summarize(study, fixed, self.sweep_dir)
        if self.plots:
            plot_study(study, self.sweep_dir)

    def load_study(self):
        return optuna.create_study(
            storage=open_storage(self.storage_url),
            sampler=self.sampler(),
            pruner=instantiate(as_container(self.pruner_conf)) if self.pruner_conf else None,
            study_name=self.study_name,
            direction=self.direction,
            load_if_exists=True,
        )

    def sampler(self):
        """The configured sampler; its seed is offset by the trials already in the study, so
        a resumed search does not draw the same parameters again."""
        if not self.sampler_conf:
            return None
        conf = OmegaConf.create(as_container(self.sampler_conf))
        if conf.get("seed") is not None:
            existing = optuna.get_all_study_summaries(open_storage(self.storage_url))
            conf.seed += sum(s.n_trials for s in existing if s.study_name == self.study_name)
        return instantiate(conf)

    def run_trials(self, study, trials, fixed):
        """Launch the trials as jobs numbered by trial number (one launch when consecutive,
        so a parallel launcher runs them together) and tell the study how each ended."""
        numbers = [t.number for t in trials]
        groups = (
            [trials]
            if numbers == list(range(numbers[0], numbers[0] + len(numbers)))
            else [[t] for t in trials]
        )
        for group in groups:
            jobs = [[*fixed, *trial_overrides(t), *self.env_overrides(study, t)] for t in group]
            results = self.launcher.launch(jobs, initial_job_idx=group[0].number)
            for trial, result in zip(group, results):
                tell(study, trial, result)

    def env_overrides(self, study, trial):
        values = {
            "storage": self.storage_url,
            "study": study.study_name,
            "trial_id": trial._trial_id,  # what optuna.trial.Trial(study, id) takes
            "pruner": json.dumps(as_container(self.pruner_conf)) if self.pruner_conf else "",
        }
        return [f"++hydra.job.env_set.{TRIAL_ENV[k]}={quoted(v)}" for k, v in values.items()]


def as_container(conf):
    return OmegaConf.to_container(conf) if OmegaConf.is_config(conf) else dict(conf)


def search_space(overrides):
    """(fixed overrides, {key: distribution}) from Hydra's sweep syntax."""
    fixed, space = [], {}
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(f"{override.get_key_element()}={override.get_value_element_as_str()}")
    return fixed, space


def distribution(override):
    value = override.value()
    tags = set(value.tags)
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):  # Python's range: the stop is left out
        step = value.step or 1
        last = value.start + step * math.ceil((value.stop - value.start) / step - 1)
        integers = isinstance(value.start, int) and isinstance(step, int)
        return (IntDistribution if integers else FloatDistribution)(value.start, last, step=step)
    if isinstance(value, IntervalSweep):
        if "int" in tags:
            return IntDistribution(int(value.start), int(value.end), log="log" in tags)
        return FloatDistribution(value.start, value.end, log="log" in tags)
    raise ConfigError(
        f"{override.input_line}: the optuna sweeper takes interval(...), range(...), "
        "choice(...) or a,b,c"
    )


def corners(fixed, space):
    """Jobs to check before the search: each choice once, each numeric range at both ends."""
    jobs = []
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            values = dist.choices
        else:
            values = (dist.low, dist.high)
        rest = [
            f"{k}={override_text(d.choices[0] if hasattr(d, 'choices') else d.low)}"
            for k, d in space.items()
            if k != key
        ]
        jobs += [[*fixed, *rest, f"{key}={override_text(v)}"] for v in values]
    return jobs or [fixed]


def trial_overrides(trial):
    return [f"{key}={override_text(value)}" for key, value in trial.params.items()]


def override_text(value):
    return repr(value) if isinstance(value, float) else str(value)


def quoted(value):
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def ask(study, space):
    """A new trial that names its worker (host:pid) from the moment it exists, so a search
    killed at any point can tell its own orphaned trials from other workers' live ones:
    study.ask pops the queued template that carries the name. (Trials queued by others,
    such as retries, are taken as they are and named right after.)"""
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.enqueue_trial({}, user_attrs={"worker": worker_id()})
    trial = study.ask(space)
    if trial.user_attrs.get("worker") != worker_id():
        trial.set_user_attr("worker", worker_id())
    return trial


def worker_id():
    return f"{socket.gethostname()}:{os.getpid()}"


def counted_trials(study):
    """Trials that use up n_trials: finished (interrupted ones excepted) or running."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.RUNNING
        or (
            t.state in FINISHED and not str(t.user_attrs.get("fail_reason")).startswith(INTERRUPTED)
        )
    ]


def settle_orphaned_trials(study, sweep_dir):
    """RUNNING trials whose process on this machine is gone (killed, crashed session): one
    whose job had finished gets its recorded outcome; the others are FAIL "interrupted" and
    their parameters are queued to be tried again."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if worker_host != host or process_alive(int(pid)):
            continue
        job = read_job(sweep_dir / str(trial.number)) or {}
        if job.get("status") == "done" and is_number(job.get("score")):
            study.tell(trial.number, float(job["score"]))
        elif job.get("status") == "pruned":
            study.tell(trial.number, state=TrialState.PRUNED)
        else:
            reason = f"{INTERRUPTED}: its process ({host}:{pid}) ended"
            optuna.trial.Trial(study, trial._trial_id).set_user_attr("fail_reason", reason)
            study.tell(trial.number, state=TrialState.FAIL)
            if trial.params:  # killed before its parameters were drawn: nothing to retry
                retry = {"retry_of": trial.number, "worker": worker_id()}
                study.enqueue_trial(trial.params, user_attrs=retry)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def tell(study, trial, result):
    job = read_job(result.hydra_cfg.hydra.runtime.output_dir) if result.hydra_cfg else None
    job = job or {}
    if result.status == JobStatus.COMPLETED and is_number(result.return_value):
        study.tell(trial, float(result.return_value))
    elif job.get("status") == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("fail_reason", failure_reason(result, job))
        study.tell(trial, state=TrialState.FAIL)


def failure_reason(result, job):
    if job.get("reason"):
        return job["reason"]
    if result.status == JobStatus.COMPLETED:
        return f"the job returned no finite score ({result.return_value!r})"
    error = result._return_value  # the launcher keeps the job's exception here
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def is_number(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def summarize(study, fixed, sweep_dir):
    """Print and write the best trial (best.yaml with its command) and the plots."""
    counts = {state.name: 0 for state in FINISHED}
    for trial in study.get_trials(deepcopy=False, states=FINISHED):
        counts[trial.state.name] += 1
    print(
        f"\nsearch {study.study_name}: "
        + ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
        + f" ({sweep_dir})"
    )
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        print(f"  trial {trial.number} failed: {trial.user_attrs.get('fail_reason', '?')}")
    if counts["COMPLETE"] == 0:
        print("no trial completed: no best trial", file=sys.stderr)
        sys.exit(1)
    best = study.best_trial
    command = shlex.join(["metric-run", *fixed, *trial_overrides(best)])
    best_record = {
        "value": best.value,
        "params": dict(best.params),
        "trial": best.number,
        "job_dir": str(sweep_dir / str(best.number)),
        "command": command,
    }
    OmegaConf.save(OmegaConf.create(best_record), sweep_dir / "best.yaml")
    print(f"best value {best.value:.4f} (trial {best.number}): {best.params}")
    print(f"reproduce it: {command}")


def plot_study(study, sweep_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    plots = {
        "optimization_history.png": optuna_plots.plot_optimization_history,
        "param_importances.png": optuna_plots.plot_param_importances,
    }
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                axes = plot(study)
            except (ValueError, RuntimeError) as error:  # e.g. importance of a single trial
                print(f"{name}: not drawn ({error})")
                continue
        axes.figure.tight_layout()
        axes.figure.savefig(sweep_dir / name, dpi=110)
        plt.close(axes.figure)
    print(f"plots: {sweep_dir / 'optimization_history.png'}, {sweep_dir / 'param_importances.png'}")
