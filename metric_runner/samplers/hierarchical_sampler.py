import itertools
import numbers

import numpy as np
import torch
from torch.utils.data import Sampler

from ..utils.errors import InvalidArgumentError
from .m_per_class_sampler import epoch_generator, group_by_label, random_subsets


class HierarchicalSampler(Sampler):
    """Batches over a two-level label hierarchy, as in ROADMAP (Ramzi et al., "Robust and
    Decomposable Average Precision for Image Retrieval", NeurIPS 2021).

    `labels` is (N, ≥2): column `inner_label` holds the class, column `outer_label` its super
    class. Each batch holds `super_classes_per_batch` distinct super classes, each filling a
    sub-batch of batch_size // super_classes_per_batch samples with distinct classes of that
    super class: `samples_per_class` samples per class (with replacement for smaller classes),
    or, with samples_per_class="all", whole classes taken in random order while they fit.
    A super class with too few classes gives a shorter sub-batch. Every combination of
    super classes gets `batches_per_super_tuple` batches; an epoch yields them (lists of
    indices) in random order and each epoch draws new batches. Randomness comes from
    `generator`, or else from `c_f.NUMPY_RANDOM` (see epoch_generator).
    """

    def __init__(
        self,
        labels,
        batch_size,
        samples_per_class,
        batches_per_super_tuple=4,
        super_classes_per_batch=2,
        inner_label=0,
        outer_label=1,
        generator=None,
    ):
        labels = labels.cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
        check_arguments(
            labels, batch_size, samples_per_class, super_classes_per_batch, inner_label, outer_label
        )
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.batches_per_super_tuple = batches_per_super_tuple
        self.super_classes_per_batch = super_classes_per_batch
        self.sub_batch_len = batch_size // super_classes_per_batch
        self.generator = generator
        (
            self.sorted_indices,
            self.class_counts,
            self.class_offsets,
            self.classes_of_super,
        ) = group_hierarchy(labels, inner_label, outer_label)
        if len(self.classes_of_super) < super_classes_per_batch:
            raise InvalidArgumentError(
                f"super_classes_per_batch ({super_classes_per_batch}) exceeds the number of super "
                f"classes in column {outer_label} ({len(self.classes_of_super)})."
            )
        self.super_tuples = list(
            itertools.combinations(range(len(self.classes_of_super)), super_classes_per_batch)
        )
        self.reshuffle()

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        self.reshuffle()
        return iter(self.batches)

    def reshuffle(self):
        """Draw a new epoch of batches."""
        generator = epoch_generator(self.generator)
        appearances = np.bincount(
            np.array(self.super_tuples).flatten(), minlength=len(self.classes_of_super)
        )
        sub_batches = [
            iter(
                self.sub_batches(super_class, int(count) * self.batches_per_super_tuple, generator)
            )
            for super_class, count in enumerate(appearances)
        ]
        batches = []
        for super_tuple in self.super_tuples:
            for _ in range(self.batches_per_super_tuple):
                batch = torch.cat([next(sub_batches[s]) for s in super_tuple])
                batches.append(batch[torch.randperm(len(batch), generator=generator)].tolist())
        order = torch.randperm(len(batches), generator=generator).tolist()
        self.batches = [batches[i] for i in order]

    def sub_batches(self, super_class, count, generator):
        """`count` sub-batches (index tensors) of one super class."""
        classes = self.classes_of_super[super_class]
        if self.samples_per_class == "all":
            return self.whole_class_sub_batches(classes, count, generator)
        classes_per_sub_batch = min(len(classes), self.sub_batch_len // self.samples_per_class)
        picks = random_subsets(torch.full((count,), len(classes)), classes_per_sub_batch, generator)
        chosen = classes[picks].flatten()
        positions = random_subsets(self.class_counts[chosen], self.samples_per_class, generator)
        indices = self.sorted_indices[self.class_offsets[chosen].unsqueeze(1) + positions]
        return list(indices.reshape(count, -1))

    def whole_class_sub_batches(self, classes, count, generator):
        """Classes in random order, each taken whole if it still fits in the sub-batch."""
        sizes = self.class_counts[classes]
        order = torch.argsort(torch.rand(count, len(classes), generator=generator), dim=1)
        room = torch.full((count,), self.sub_batch_len)
        taken = torch.zeros(count, len(classes), dtype=torch.bool)
        # A loop over class positions (not samples), vectorized over all sub-batches.
        for position in range(len(classes)):
            size = sizes[order[:, position]]
            fits = size <= room
            taken[:, position] = fits
            room -= torch.where(fits, size, 0)
        taken_classes = torch.zeros_like(taken).scatter_(1, order, taken)
        # One super class's samples are contiguous in sorted_indices (see group_hierarchy).
        start = int(self.class_offsets[classes[0]])
        members = self.sorted_indices[start : start + int(sizes.sum())]
        return [members[torch.repeat_interleave(row, sizes)] for row in taken_classes]


def group_hierarchy(labels, inner_label, outer_label):
    """Dataset indices grouped by class (see `group_by_label`) plus, per super class, the
    tensor of its class ids.

    A class is an (outer, inner) pair, so an inner id reused under two super classes counts
    as two classes; class ids sort by (outer, inner), so each super class owns a contiguous
    range of them and of the sorted indices.
    """
    _, class_of_sample = np.unique(
        labels[:, [outer_label, inner_label]], axis=0, return_inverse=True
    )
    sorted_indices, class_counts, class_offsets = group_by_label(class_of_sample)
    first_sample_of_class = sorted_indices[class_offsets].numpy()
    _, super_of_class = np.unique(labels[first_sample_of_class, outer_label], return_inverse=True)
    classes_per_super = torch.bincount(torch.as_tensor(super_of_class.reshape(-1)))
    classes_of_super = torch.arange(len(class_counts)).split(classes_per_super.tolist())
    return sorted_indices, class_counts, class_offsets, classes_of_super


def check_arguments(
    labels, batch_size, samples_per_class, super_classes_per_batch, inner_label, outer_label
):
    if labels.ndim != 2 or labels.shape[1] <= max(inner_label, outer_label):
        raise InvalidArgumentError(
            f"labels must be 2D (num_samples, num_levels) with columns {inner_label} (class) and "
            f"{outer_label} (super class); got shape {labels.shape}."
        )
    if inner_label == outer_label:
        raise InvalidArgumentError(
            f"inner_label and outer_label must be different columns, both are {inner_label}."
        )
    if super_classes_per_batch < 1 or batch_size % super_classes_per_batch != 0:
        raise InvalidArgumentError(
            f"batch_size ({batch_size}) must be a positive multiple of super_classes_per_batch "
            f"({super_classes_per_batch}): each super class fills an equal sub-batch."
        )
    if samples_per_class == "all":
        return
    sub_batch_len = batch_size // super_classes_per_batch
    if (
        not isinstance(samples_per_class, numbers.Integral)
        or samples_per_class < 1
        or sub_batch_len % samples_per_class
    ):
        raise InvalidArgumentError(
            f"samples_per_class must be 'all' or a positive integer dividing the sub-batch length "
            f"batch_size // super_classes_per_batch = {sub_batch_len}; got {samples_per_class!r}."
        )
