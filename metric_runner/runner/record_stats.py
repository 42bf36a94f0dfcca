"""`log_stats=true`: the statistics the loss and miner record, logged without a trainer.

Components that derive from ModuleWithRecords list their statistics in `_record_these_stats`
when they are built with `collect_stats` on (the loss's distance and reducer too), and refresh
them at each call. After every training step `StatsRecorder` reads them from the whole module
tree, names each `<component>/<submodule path>/<stat>` (`loss/num_pos_pairs`,
`loss/distance/final_avg_query_norm`, `miner/num_pos_pairs`) and keeps the epoch's sums for
the means that go into metrics.jsonl.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from ..utils import common_functions as c_f
from ..utils.module_with_records import ModuleWithRecords


@contextmanager
def collecting_stats(enabled: bool) -> Iterator[None]:
    """Components built inside (nested distances and reducers included) collect statistics
    when `enabled`; the global default is restored afterwards."""
    previous = c_f.COLLECT_STATS
    c_f.COLLECT_STATS = previous or enabled
    try:
        yield
    finally:
        c_f.COLLECT_STATS = previous


def recorded_stats(components: Mapping[str, torch.nn.Module | None]) -> dict[str, float]:
    """{"<component>/<submodule path>/<stat>": float} for every statistic currently recorded
    by `components` ({name: module or None}) and their submodules."""
    stats = {}
    for component_name, component in components.items():
        if component is None:
            continue
        for path, module in component.named_modules():
            if not isinstance(module, ModuleWithRecords):
                continue
            prefix = "/".join([component_name, *filter(None, path.split("."))])
            for stat in getattr(module, "_record_these_stats", []):
                value = getattr(module, stat)
                stats[f"{prefix}/{stat}"] = float(value.item() if torch.is_tensor(value) else value)
    return stats


class StatsRecorder:
    """Reads the components' statistics after each step and averages them over the epoch."""

    def __init__(self, components: Mapping[str, torch.nn.Module | None]):
        self.components = components
        self.sums, self.counts = {}, {}

    def step(self) -> dict[str, float]:
        """This step's statistics (also added to the epoch's sums)."""
        stats = recorded_stats(self.components)
        for name, value in stats.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1
        return stats

    def epoch_means(self) -> dict[str, float]:
        """The means since the last call, then start a new epoch."""
        means = {name: total / self.counts[name] for name, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means
