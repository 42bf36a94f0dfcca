"""The training state: everything a restart needs, in one object that callbacks read and
update and that checkpoints are written from and restored into."""

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import load_models, load_state, restore_rng_states, rng_states


@dataclass
class Progress:
    """Counters that survive a restart."""

    epoch: int = 0
    global_step: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    stale_evals: int = 0


@dataclass
class TrainingState:
    """`models` ({name: module}), `loss` (the loss module itself, not its distributed
    wrapper; None without a supervised loss), `optimizer` (and `extra_optimizers`, {name:
    optimizer} of the models a trainer block adds),
    `scheduler` (or None) and `grad_scaler` are saved in checkpoints with `progress` and the
    RNG states; `record` is the current epoch's evaluation record as callbacks fill it
    (epoch, global_step, train_loss, lr, stats, accuracies), `score` its monitored value and
    `improved` whether it is the best so far; `step_loss` (the last step's total loss, a
    detached tensor on the training device: read it at the rate you log, `.item()` syncs) and
    `step_stats` are the last step's, for the loggers."""

    models: dict[str, torch.nn.Module]
    loss: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch.optim.lr_scheduler instance, or None
    grad_scaler: torch.amp.GradScaler
    config_yaml: str
    config_hash: str
    extra_optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    record: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    improved: bool = False
    step_loss: torch.Tensor | None = None
    step_stats: dict[str, Any] = field(default_factory=dict)

    def start_epoch_record(self, epoch: int) -> None:
        self.progress.epoch = epoch
        self.record = {"epoch": epoch, "global_step": self.progress.global_step}
        self.score, self.improved = None, False

    @property
    def evaluated(self) -> bool:
        return "accuracies" in self.record

    def state_dict(self) -> dict[str, Any]:
        return {
            "models": {name: unwrapped(m).state_dict() for name, m in self.models.items()},
            "loss": self.loss.state_dict() if self.loss is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "extra_optimizers": {n: o.state_dict() for n, o in self.extra_optimizers.items()},
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "grad_scaler": self.grad_scaler.state_dict(),
            "progress": asdict(self.progress),
            "epoch": self.progress.epoch,
            "rng": rng_states(),
            "config": self.config_yaml,
            "config_hash": self.config_hash,
        }

    def load_state_dict(self, checkpoint: dict[str, Any], path: str | Path) -> None:
        """Restore everything from `checkpoint` (read from `path`, named in errors)."""
        load_models({n: unwrapped(m) for n, m in self.models.items()}, checkpoint, path)
        if self.loss is not None:
            load_state(self.loss, checkpoint["loss"], "loss", path)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        for name, optimizer in self.extra_optimizers.items():
            optimizer.load_state_dict(checkpoint["extra_optimizers"][name])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.grad_scaler.load_state_dict(checkpoint["grad_scaler"])
        self.progress = Progress(**checkpoint["progress"])
        restore_rng_states(checkpoint["rng"])


def unwrapped(module: torch.nn.Module) -> torch.nn.Module:
    """The module itself, not its DistributedDataParallel wrapper (checkpoints hold the same
    keys however many processes trained)."""
    return module.module if isinstance(module, DistributedDataParallel) else module
