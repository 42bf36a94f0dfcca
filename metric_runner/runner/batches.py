"""Training batches of in-memory tensors in one indexing call each.

torch's DataLoader fetches a batch through the dataset's `__getitems__` when it has one; a
TensorDataset does not, so each batch would be `batch_size` item fetches and a collate, which
matters for small models on small data (the digits). The trainer gets `WholeBatches(dataset)`
with `collate_fn=already_batched` through PML's own arguments.
"""

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler, TensorDataset

from ..samplers.m_per_class_sampler import group_by_label
from .components import RunError


class WholeBatches(Dataset):
    def __init__(self, dataset: TensorDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return self.dataset[index]

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        return [tensor[indices] for tensor in self.dataset.tensors]


def already_batched(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    return batch


class SameClassPartners(Dataset):
    """Two streams from one labelled tensor dataset, for TwoStreamMetricLoss: sample i yields
    (x_i, x_j, y_i) with j a sample of the same class (another one when the class has
    several), drawn once from `seed`; whole batches at a time, like WholeBatches."""

    def __init__(self, dataset: TensorDataset, seed: int):
        self.inputs, self.labels = dataset.tensors
        self.partners = same_class_partners(self.labels, torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        return self.__getitems__(index)

    def __getitems__(self, indices: Sequence[int] | int) -> list[torch.Tensor]:
        return [self.inputs[indices], self.inputs[self.partners[indices]], self.labels[indices]]


def same_class_partners(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """partners[i]: a random index of i's class other than i (i itself in a class of one)."""
    order, counts, offsets = group_by_label(labels)
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order))  # i's rank within the sorted order
    class_of = torch.repeat_interleave(torch.arange(len(counts)), counts)[position]
    size, start = counts[class_of], offsets[class_of]
    shift = (torch.rand(len(labels), generator=generator) * (size - 1)).long() + 1
    partner_rank = (position - start + shift) % size
    return order[start + partner_rank]


def trainer_dataset(
    dataset: Dataset, two_streams: bool = False, seed: int = 0
) -> tuple[Dataset, Callable | None]:
    """(dataset, collate_fn) for the trainer: tensor datasets whole batches at a time (two
    streams of same-class partners for a two-stream trainer)."""
    if two_streams:
        if not isinstance(dataset, TensorDataset):
            raise ValueError(
                "trainer=two_stream pairs samples of an in-memory tensor dataset (e.g. "
                "dataset=digits); other datasets need a dataset that yields (anchor, other, label)"
            )
        return SameClassPartners(dataset, seed), already_batched
    if isinstance(dataset, TensorDataset):
        return WholeBatches(dataset), already_batched
    return dataset, None


class FlattenedBatches(Sampler):
    """A batch sampler's batches (HierarchicalSampler yields whole batches) as one stream of
    indices, each batch one consecutive block, which is what RankShareSampler cuts."""

    def __init__(self, batch_sampler: Sampler[list[int]], batch_size: int):
        self.batch_sampler, self.batch_size = batch_sampler, batch_size

    def __len__(self) -> int:
        return len(self.batch_sampler) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for batch in self.batch_sampler:
            if len(batch) != self.batch_size:  # a short batch would shift every later one
                raise RunError(
                    f"sampler: a batch of {len(batch)} samples, not batch_size={self.batch_size}: "
                    "a super class has too few classes; lower sampler.samples_per_class"
                )
            yield from batch
