"""`hydra/sweeper=optuna`: Bayesian search with Optuna's current API (the official Hydra
plugin pins optuna<3). Its keys follow the official plugin's: direction, n_trials, n_jobs,
study_name, storage, sampler, pruner, params (Hydra's sweep syntax: interval(0.01, 0.5),
tag(log, interval(1e-5, 1e-2)), tag(int, interval(1, 8)), range(1, 9, 2), choice(a, b)).

The study lives in storage (SQLite in the sweep directory unless `storage` says otherwise: any
RDB URL, or `journal:PATH` for Optuna's journal file on a shared filesystem), so re-running
the command continues it without repeating finished trials, and several processes or SLURM
jobs can share it. n_trials counts the study's finished trials, whoever ran them. A trial whose
job fails is FAIL with its reason (user attribute fail_reason) and the search goes on; a trial
interrupted with its process is FAIL ("interrupted") and its parameters are tried again. Each
evaluation's score reaches the trial through metric_runner.runner.sweep.report_evaluation, so
the pruner can stop it (PRUNED). At the end: best value and parameters, best.yaml with the
command that reproduces the best trial, and optimisation-history / parameter-importance PNGs.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper

from hydra_plugins.metric_runner_sweeper.grid_sweeper import DEFAULT_CHECK


class OptunaSweeper(Sweeper):
    def __init__(self, **settings):
        super().__init__()
        from ._impl import OptunaSearch

        self.search = OptunaSearch(**settings)

    def setup(self, *, hydra_context, task_function, config):
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments):
        return self.search.sweep(arguments)


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.metric_runner_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # sampler and pruner are built when the study is loaded
    direction: str = "maximize"
    n_trials: int = 20  # finished trials of the study in total, whoever ran them
    n_jobs: int = 1  # trials launched together (a parallel launcher runs them at once)
    study_name: str | None = None  # null: the sweep directory's name
    storage: str | None = None  # null: sqlite:///<sweep dir>/optuna.db; or journal:PATH
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None}
    )
    pruner: Any = None  # e.g. {_target_: optuna.pruners.MedianPruner, n_warmup_steps: 2}
    params: dict[str, str] | None = None
    check: str | None = DEFAULT_CHECK  # the jobs' config check, before the search
    plots: bool = True  # optimisation history and parameter importances (seconds on big studies)


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="metric_runner"
)
