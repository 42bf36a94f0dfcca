import numpy as np
import torch
from torch.utils.data import Sampler

from ..utils import common_functions as c_f
from ..utils.errors import InvalidArgumentError


def group_by_label(labels):
    """Dataset indices sorted by label, plus each label's count and start offset in that order.

    Returns (sorted_indices, counts, offsets) as long tensors; labels may be any sortable values.
    """
    if torch.is_tensor(labels):
        labels = labels.cpu().numpy()
    _, inverse = np.unique(np.asarray(labels), return_inverse=True)
    inverse = torch.as_tensor(inverse.reshape(-1), dtype=torch.long)
    sorted_indices = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse)
    offsets = torch.cumsum(counts, dim=0) - counts
    return sorted_indices, counts, offsets


def epoch_generator(generator=None):
    """The torch generator one epoch of a sampler draws from: `generator` when given, else a
    fresh one seeded by a draw from `c_f.NUMPY_RANDOM` (read now, not at import), so that
    `c_f.NUMPY_RANDOM = np.random.RandomState(42)`, or `np.random.seed(42)` with the default,
    makes every sampler reproducible, as PML documents."""
    if generator is not None:
        return generator
    seed = c_f.NUMPY_RANDOM.randint(0, np.iinfo(np.int64).max, dtype=np.int64)
    return torch.Generator().manual_seed(int(seed))


def random_subsets(population_sizes, subset_size, generator=None):
    """One row of `subset_size` positions in [0, population_sizes[i]) per row i, in random order.

    Positions are distinct when the population is large enough and drawn with replacement
    otherwise. Distinct draws use Floyd's algorithm, vectorized over rows, so the cost is
    rows × subset_size² whatever the population sizes.
    """
    population_sizes = population_sizes.to(torch.float64)
    num_rows = len(population_sizes)
    picks = torch.empty(num_rows, subset_size, dtype=torch.long)
    for step in range(subset_size):
        # Floyd: candidate t uniform in [0, top]; if t is taken, take `top` (never taken yet).
        top = population_sizes - subset_size + step
        t = torch.rand(num_rows, dtype=torch.float64, generator=generator) * (top + 1)
        t = torch.minimum(t.floor(), top).long()
        taken = (picks[:, :step] == t.unsqueeze(1)).any(dim=1)
        picks[:, step] = torch.where(taken, top.long(), t)
    with_replacement = population_sizes < subset_size
    if with_replacement.any():
        uniform = torch.rand(num_rows, subset_size, dtype=torch.float64, generator=generator)
        replacement_picks = (uniform * population_sizes.unsqueeze(1)).long()
        picks = torch.where(with_replacement.unsqueeze(1), replacement_picks, picks)
    shuffle = torch.argsort(torch.rand(num_rows, subset_size, generator=generator), dim=1)
    return torch.gather(picks, 1, shuffle)


class MPerClassSampler(Sampler):
    """Yields dataset indices in groups of `m` samples of one class.

    With `batch_size`, every consecutive block of `batch_size` indices holds
    `batch_size // m` distinct classes with `m` samples each; without it, each pass visits
    every class once, in random order. A class with fewer than `m` samples is sampled with
    replacement. An epoch yields `len(self)` indices: `length_before_new_iter`, rounded down
    to a multiple of `batch_size` (or of one pass over all classes when that is shorter).
    Randomness comes from `generator`, or else from `c_f.NUMPY_RANDOM` (see epoch_generator).
    """

    def __init__(self, labels, m, batch_size=None, length_before_new_iter=100000, generator=None):
        self.m_per_class = int(m)
        self.batch_size = int(batch_size) if batch_size is not None else None
        self.generator = generator
        self.sorted_indices, self.class_counts, self.class_offsets = group_by_label(labels)
        self.length_of_single_pass = self.m_per_class * len(self.class_counts)
        self.list_size = self.checked_list_size(length_before_new_iter)

    def checked_list_size(self, length_before_new_iter):
        if self.m_per_class < 1:
            raise InvalidArgumentError(
                f"m must be a positive number of samples per class, got {self.m_per_class}"
            )
        if self.batch_size is None:
            if self.length_of_single_pass < length_before_new_iter:
                return length_before_new_iter - length_before_new_iter % self.length_of_single_pass
            return length_before_new_iter
        if self.batch_size % self.m_per_class != 0:
            raise InvalidArgumentError(
                f"batch_size ({self.batch_size}) must be a multiple of m ({self.m_per_class}): "
                "each batch holds batch_size // m classes with m samples each."
            )
        if self.batch_size > self.length_of_single_pass:
            raise InvalidArgumentError(
                f"batch_size ({self.batch_size}) needs {self.batch_size // self.m_per_class} "
                f"classes per batch but the labels hold only {len(self.class_counts)}: "
                f"use batch_size <= m * number of classes ({self.length_of_single_pass})."
            )
        if length_before_new_iter < self.batch_size:
            raise InvalidArgumentError(
                f"length_before_new_iter ({length_before_new_iter}) must be at least "
                f"batch_size ({self.batch_size})."
            )
        return length_before_new_iter - length_before_new_iter % self.batch_size

    def __len__(self):
        return self.list_size

    def calculate_num_iters(self):
        """Blocks per epoch: batches of batch_size, or, without it, passes over all classes
        (the last one possibly cut short)."""
        block = self.batch_size if self.batch_size is not None else self.length_of_single_pass
        return -(-self.list_size // block)

    def __iter__(self):
        generator = epoch_generator(self.generator)
        classes = self.sampled_classes(generator)
        positions = random_subsets(self.class_counts[classes], self.m_per_class, generator)
        indices = self.sorted_indices[self.class_offsets[classes].unsqueeze(1) + positions]
        return iter(indices.flatten()[: self.list_size].tolist())

    def sampled_classes(self, generator):
        """The class of each group of m indices, in yield order."""
        num_classes = len(self.class_counts)
        if self.batch_size is None:
            keys = torch.rand(self.calculate_num_iters(), num_classes, generator=generator)
            return torch.argsort(keys, dim=1).flatten()
        classes_per_batch = self.batch_size // self.m_per_class
        all_classes = torch.full((self.calculate_num_iters(),), num_classes)
        return random_subsets(all_classes, classes_per_batch, generator).flatten()
