"""DataLoaders for the runner, and the record of how a run's labels map to the dataset's.

In-memory tensor datasets are indexed a whole batch at a time; image datasets are decoded in
worker processes that persist across epochs, into pinned memory when training on CUDA, or, when
the dataset asks for it (`dataset.decode`), a batch at a time on the run's device.
"""

import json
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

LABEL_MAP_FILE = "label_map.json"


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
