"""`hydra/sweeper=grid`: Hydra's basic grid sweep, made to survive its jobs.

Before the first job, every combination is composed and checked against the registry (a
mistake: one line naming the combination, exit 2, nothing run) and against what its job
directory already holds; Hydra's in-process launcher then runs the configs the check composed
(each job's config is composed once, and jobs that choose the same config groups, such as a
sweep over seeds, share their defaults list and merged files). A failed job does not stop the
sweep; the end prints the done, failed and skipped counts and exits 1 when a job failed. The
per-job bookkeeping (job.json, sweep.jsonl, skipping and resuming) is
metric_runner.runner.sweep.run_job's.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

DEFAULT_CHECK = "metric_runner.runner.components.check_config"


class GridSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        check: str | None = DEFAULT_CHECK,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.check = check

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from ._impl import composing_once

        super().setup(
            hydra_context=composing_once(hydra_context, config),
            task_function=task_function,
            config=config,
        )

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        from ._impl import sweep

        return sweep(self, arguments)


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.metric_runner_sweeper.grid_sweeper.GridSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    # each job's config check before the first job runs (once for jobs that differ in the seed only)
    check: str | None = DEFAULT_CHECK


ConfigStore.instance().store(
    group="hydra/sweeper", name="grid", node=GridSweeperConf, provider="metric_runner"
)
