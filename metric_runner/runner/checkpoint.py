"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is a dict of tensors and plain Python values (so `torch.load(weights_only=True)`
can read it): model and loss state dicts, optimizer/scheduler/grad-scaler states, the epoch,
the early-stopping state, every RNG state, and the resolved config with its hash.
"""

import hashlib
import random
import re
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..utils.atomic_write import write_atomically

# Config keys that say how to run, not what to train: changing them keeps a run resumable.
RUN_CONTROL_KEYS = (
    "mode",
    "resume",
    "checkpoint",
    "epochs",
    "device",
    "num_workers",
    "pin_memory",
    "log_stats",
    "logger",
    "callbacks",
    "save_checkpoints",
    "sweep_name",
    "paths",
)


# `${epochs}`, `${model.embedding_size}`: an absolute reference to another config key.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; metric-run reports it as one line."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write atomically (a crash never leaves a half-written `path`), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, partial(torch.save, state))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, not a torch file, unsafe pickle, ...
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise CheckpointError(
            f"checkpoint {str(path)!r} is unreadable ({first_line}); it may be truncated: use "
            "the run's other checkpoint (best.pt / last.pt) or start a new run"
        ) from None
    if not isinstance(state, dict) or "models" not in state or "config" not in state:
        raise CheckpointError(f"{str(path)!r} is not a metric-run checkpoint (no models/config)")
    return state


def load_state(module: Any, state_dict: dict[str, Any], what: str, path: str | Path) -> None:
    """load_state_dict with a one-line error naming the first mismatch."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as error:
        details = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a different {what}: "
            f"{(details[0] if details else str(error)).rstrip('.')}; use the config it was trained with "
            "(saved in the run directory's config.yaml)"
        ) from None


def load_models(
    models: dict[str, torch.nn.Module], state: dict[str, Any], path: str | Path
) -> None:
    """Load each model of `models` ({name: module}: trunk, embedder, ...) from the
    checkpoint's models."""
    saved = state["models"]
    for name, part in models.items():
        if name not in saved:
            raise CheckpointError(
                f"checkpoint {str(path)!r} has no model.{name} (it holds {', '.join(saved)}); use "
                "the config it was trained with (saved in the run directory's config.yaml)"
            )
        load_state(part, saved[name], f"model.{name}", path)


def config_hash(cfg: DictConfig) -> str:
    """Hash of what the run trains (run-control keys excluded)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in RUN_CONTROL_KEYS:
        container.pop(key, None)
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(container)).encode()).hexdigest()[:16]


def differing_keys(cfg: DictConfig, saved_yaml: str) -> list[str]:
    """Dotted keys whose values differ between cfg and a saved config, named as a user sets
    them: a key that only copies others (`sampler.batch_size: ${batch_size}`) is named by those,
    so keys computed from run-control keys (`scheduler.T_max: ${epochs}`) are left out too."""
    current = flatten(OmegaConf.to_container(cfg, resolve=True))
    saved = flatten(OmegaConf.to_container(OmegaConf.create(saved_yaml), resolve=True))
    sources = interpolation_sources(cfg)
    changed = (k for k in current.keys() | saved.keys() if current.get(k) != saved.get(k))
    named = {source for key in changed for source in sources.get(key, [key])}
    return sorted(k for k in named if k.split(".")[0] not in RUN_CONTROL_KEYS)


def interpolation_sources(cfg: DictConfig) -> dict[str, list[str]]:
    """{dotted key: the keys its value interpolates}, followed to keys holding values
    (resolvers such as `${now:...}` are not keys)."""
    raw = flatten(OmegaConf.to_container(cfg, resolve=False))
    direct = {
        key: INTERPOLATION.findall(value)
        for key, value in raw.items()
        if isinstance(value, str) and INTERPOLATION.search(value)
    }

    def origins(key, seen=()):
        if key not in direct or key in seen:
            return [key]
        return [o for source in direct[key] for o in origins(source, (*seen, key))]

    return {key: origins(key) for key in direct}


def flatten(container: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(container, dict):
        return {prefix[:-1]: container}
    flat = {}
    for key, value in container.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def rng_states() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "position": numpy_state[2],
            "has_gauss": numpy_state[3],
            "cached_gaussian": numpy_state[4],
        },
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal_state, gauss = states["python"]
    random.setstate((version, tuple(internal_state), gauss))
