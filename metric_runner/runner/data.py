"""DataLoaders for the runner, and the record of how a run's labels map to the dataset's.

In-memory tensor datasets are indexed a whole batch at a time; image datasets are decoded in
worker processes that persist across epochs, into pinned memory when training on CUDA, or, when
the dataset asks for it (`dataset.decode`), a batch at a time on the run's device. The config's
`num_workers` and `pin_memory` default to `auto`, resolved here per run.
"""

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    Sampler,
    SequentialSampler,
    TensorDataset,
)

from ..datasets.batch_decode import BatchDecoder, EncodedImages, collate_encoded
from ..utils.atomic_write import write_atomically
from .registry import ConfigError

LABEL_MAP_FILE = "label_map.json"
# More workers than this rarely read images faster for one GPU, and each holds a dataset copy.
MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class Loading:
    """How a trainer or tester reads splits: the datasets its DataLoaders iterate, their
    collate_fn and the data_and_label_getter that turns a batch into (inputs, labels); None:
    the DataLoader's and the trainer's or tester's defaults."""

    datasets: dict[str, Dataset]
    collate_fn: Callable | None = None
    data_and_label_getter: Callable | None = None

    @property
    def decodes_batches(self) -> bool:
        return self.data_and_label_getter is not None


def loading(splits: Mapping[str, Dataset], device: torch.device) -> Loading:
    """The splits as they are, or, when they decode on `device` (ZeroShotSplit's `decode`),
    their files' bytes (EncodedImages) batched by collate_encoded and decoded a batch at a time
    on the device by one BatchDecoder. The splits of one config decode alike, and the splits
    one tester reads share a transform (val and test both take the eval one)."""
    first = next(iter(splits.values()))
    if not decodes_on(first, device):
        return Loading(dict(splits))
    return Loading(
        {name: EncodedImages(split) for name, split in splits.items()},
        collate_encoded,
        BatchDecoder(first.transform, device),
    )


def decodes_on(split: Dataset, device: torch.device) -> bool:
    """Whether `split` asks for batch decoding on `device`; datasets without the setting
    (in-memory tensors) never do."""
    asks = getattr(split, "decodes_on", None)
    return asks is not None and asks(device)


@dataclass(frozen=True)
class LoaderSettings:
    """What the config's `num_workers` and `pin_memory` resolved to for this run."""

    num_workers: int
    pin_memory: bool


def loader_settings(
    num_workers: int | str, pin_memory: bool | str, dataset_class: type, device: torch.device
) -> LoaderSettings:
    """The run's DataLoader settings, checked before any data is loaded (hence the dataset's
    class, not the dataset)."""
    return LoaderSettings(
        resolve_num_workers(num_workers, dataset_class), resolve_pin_memory(pin_memory, device)
    )


def resolve_num_workers(setting: int | str, dataset_class: type) -> int:
    """An integer >= 0 as given; auto: 0 for in-memory tensor datasets (a batch is one indexing
    call, which workers would only slow down with start-up and copies between processes), else
    one worker per usable CPU, shared among the processes torchrun started on this machine, at
    most MAX_AUTO_WORKERS."""
    if setting == "auto":
        if issubclass(dataset_class, TensorDataset):
            return 0
        processes_here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        return max(1, min(MAX_AUTO_WORKERS, usable_cpus() // processes_here))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ConfigError(f"num_workers: must be auto or an integer >= 0, got {setting!r}")
    return setting


def resolve_pin_memory(setting: bool | str, device: torch.device) -> bool:
    """auto: pinned on CUDA. Pinning only speeds up copies to a GPU, so true means nothing
    elsewhere and resolves to False off CUDA."""
    if setting == "auto":
        setting = True
    elif not isinstance(setting, bool):
        raise ConfigError(f"pin_memory: must be auto, true or false, got {setting!r}")
    return setting and device.type == "cuda"


def usable_cpus() -> int:
    """The CPUs this process may run on (a job scheduler's or taskset's share, not the whole
    machine's count where the platform says so)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def make_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler | Iterable[int] | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of `dataset` in `sampler`'s order (sequential when None), last batch kept.

    A TensorDataset gets each batch from one indexing call instead of `batch_size` item fetches
    and a collate, which matters for small models on small data (the digits).
    """
    sampler = SequentialSampler(dataset) if sampler is None else sampler
    if isinstance(dataset, TensorDataset):
        batches = BatchSampler(sampler, batch_size, drop_last=False)
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=batches,
            num_workers=num_workers,
            pin_memory=pin_memory,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


def save_label_maps(splits: Mapping[str, Dataset], run_dir: str | Path) -> Path | None:
    """Write run_dir/label_map.json: for each split whose dataset renumbered its labels to
    0..C-1 (`label_map`, as ZeroShotSplit does), the dataset's own label of each index, so
    embeddings and per-class results can be traced back to the dataset's classes. Returns the
    file's path, or None when no split renumbered its labels."""
    maps = {
        name: dataset.label_map
        for name, dataset in splits.items()
        if getattr(dataset, "label_map", None) is not None
    }
    if not maps:
        return None
    path = Path(run_dir) / LABEL_MAP_FILE
    write_atomically(path, json.dumps(maps, indent=1))  # a crash never leaves a half-written map
    return path
