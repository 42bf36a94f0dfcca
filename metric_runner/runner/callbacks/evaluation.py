from collections.abc import Callable
from pathlib import Path

import torch

from ...testers import BaseTester
from ..registry import ConfigError
from ..state import TrainingState
from .hooks import Callback


class Evaluation(Callback):
    """Every `every` epochs, the last epoch and epoch 0 (untrained): the tester's accuracies
    on `splits` go into the record, and the monitored split/metric (higher is better) decides
    whether this is the best evaluation so far; `stale_evals` counts those that were not.
    `collate_fn`: the one the tester's DataLoaders use (batches decoded on the device:
    batch_decode.collate_encoded); None leaves the tester's evaluate() call as it was."""

    def __init__(
        self,
        tester: BaseTester,
        splits: dict,
        trunk: torch.nn.Module,
        embedder: torch.nn.Module | None,
        every: int,
        last_epoch: int,
        monitor: tuple[str, str],
        plot_dir: Path | None = None,
        collate_fn: Callable | None = None,
    ) -> None:
        self.tester = tester
        self.splits = splits
        self.trunk, self.embedder = trunk, embedder
        self.every, self.last_epoch = every, last_epoch
        self.monitor = monitor
        self.plot_dir = plot_dir
        # Only testers that take decoded batches get the argument (components.build_tester).
        self.evaluate_options = {} if collate_fn is None else {"collate_fn": collate_fn}

    def on_epoch_end(self, state: TrainingState) -> None:
        epoch = state.progress.epoch
        if epoch % self.every != 0 and epoch != self.last_epoch:
            return
        accuracies, _ = self.tester.evaluate(
            self.splits,
            epoch,
            self.trunk,
            self.embedder,
            plot_dir=self.plot_dir,
            **self.evaluate_options,
        )
        state.record["accuracies"] = accuracies
        state.score = monitored_score(self.monitor, accuracies)
        progress = state.progress
        state.improved = state.score > progress.best_score
        if state.improved:
            progress.best_score, progress.best_epoch, progress.stale_evals = state.score, epoch, 0
        else:
            progress.stale_evals += 1


def monitored_score(monitor: tuple[str, str], accuracies: dict) -> float:
    split, metric = monitor
    try:
        return accuracies[split][metric]
    except KeyError:
        raise ConfigError(
            f"early_stopping: the tester reported no {split}/{metric}; "
            f"it reports {sorted(accuracies.get(split, {}))}"
        ) from None
