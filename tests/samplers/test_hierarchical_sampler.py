import collections
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from metric_runner.samplers import HierarchicalSampler


def hierarchy(class_sizes_per_super):
    """(N, 2) labels: column 0 the class, column 1 the super class."""
    rows, next_class = [], 0
    for super_class, sizes in enumerate(class_sizes_per_super):
        for size in sizes:
            rows += [(next_class, super_class)] * size
            next_class += 1
    return np.array(rows)


# super 0: four classes incl. a singleton; super 1: two classes; super 2: three classes
LABELS = hierarchy([[1, 4, 6, 3], [5, 2], [3, 3, 7]])


def sub_batches(batch, labels):
    """{super class: Counter of classes} of one batch."""
    by_super = collections.defaultdict(collections.Counter)
    for index in batch:
        by_super[labels[index, 1]][labels[index, 0]] += 1
    return by_super


@pytest.mark.parametrize(
    "batch_size, samples_per_class, supers_per_batch", [(8, 2, 2), (12, 2, 3), (12, 3, 2)]
)
def test_every_batch_has_the_promised_structure(batch_size, samples_per_class, supers_per_batch):
    sub_batch_len = batch_size // supers_per_batch
    classes_in_super = {s: len(set(LABELS[LABELS[:, 1] == s, 0])) for s in range(3)}
    class_size = collections.Counter(LABELS[:, 0].tolist())
    for seed in range(10):
        np.random.seed(seed)
        sampler = HierarchicalSampler(LABELS, batch_size, samples_per_class, 3, supers_per_batch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 3 * math.comb(3, supers_per_batch)
        seen_tuples = collections.Counter()
        for batch in batches:
            structure = sub_batches(batch, LABELS)
            assert len(structure) == supers_per_batch
            seen_tuples[tuple(sorted(structure))] += 1
            for super_class, class_counts in structure.items():
                expected_classes = min(
                    classes_in_super[super_class], sub_batch_len // samples_per_class
                )
                assert len(class_counts) == expected_classes
                assert set(class_counts.values()) == {samples_per_class}
            for index, count in collections.Counter(batch).items():
                if class_size[LABELS[index, 0]] >= samples_per_class:
                    assert count == 1, "a class with enough samples was drawn with replacement"
        # every combination of super classes gets batches_per_super_tuple batches
        assert set(seen_tuples.values()) == {3}


def test_all_takes_whole_classes_while_they_fit():
    labels = hierarchy([[1, 2, 3, 6], [1, 1, 5, 2]])
    np.random.seed(0)
    patterns = collections.Counter()
    for batch in HierarchicalSampler(labels, 8, "all", batches_per_super_tuple=40):
        for super_class, class_counts in sub_batches(batch, labels).items():
            patterns[super_class, tuple(sorted(class_counts.items()))] += 1
    # Sub-batches hold 4. Super 0 (sizes 1, 2, 3, 6): the 6 never fits; after 2 the 3 does
    # not fit but the 1 does; after 3 only the 1 fits. Super 1 (1, 1, 5, 2): always 1+1+2.
    assert set(patterns) == {
        (0, ((0, 1), (1, 2))),
        (0, ((0, 1), (2, 3))),
        (1, ((4, 1), (5, 1), (7, 2))),
    }
    # the class order is random: the first two patterns are equally likely (20 ± noise)
    assert 10 <= patterns[0, ((0, 1), (1, 2))] <= 30


def test_epochs_differ_and_are_reproducible():
    def two_epochs(seed=None, generator=None):
        if seed is not None:
            np.random.seed(seed)
        sampler = HierarchicalSampler(LABELS, 8, 2, generator=generator)
        return list(sampler), list(sampler)

    first, second = two_epochs(seed=0)
    assert first != second
    assert two_epochs(seed=0) == (first, second)
    assert two_epochs(generator=torch.Generator().manual_seed(3)) == two_epochs(
        generator=torch.Generator().manual_seed(3)
    )


def test_label_columns_and_types():
    swapped = np.stack([LABELS[:, 1], np.zeros(len(LABELS), dtype=int), LABELS[:, 0]], axis=1)
    np.random.seed(0)
    sampler = HierarchicalSampler(torch.tensor(swapped), 8, 2, inner_label=2, outer_label=0)
    for batch in sampler:
        assert all(isinstance(i, int) for i in batch)
        assert len(sub_batches(batch, LABELS)) == 2


def test_drives_a_dataloader_as_batch_sampler():
    dataset = TensorDataset(torch.arange(len(LABELS)), torch.as_tensor(LABELS))
    np.random.seed(0)
    loader = DataLoader(dataset, batch_sampler=HierarchicalSampler(LABELS, 8, 2))
    sizes = [len(indices) for indices, _ in loader]
    assert len(sizes) == 12
    # every super class fills its 4-sample half with 2 classes x 2 samples
    assert set(sizes) == {8}


def test_matches_pml_batch_count_and_structure(pml):
    from pytorch_metric_learning.samplers import HierarchicalSampler as PMLHierarchicalSampler

    for args in [(8, 2, 3, 2), (12, 2, 2, 3), (40, 2, 4, 2)]:
        ours, theirs = HierarchicalSampler(LABELS, *args), PMLHierarchicalSampler(LABELS, *args)
        assert len(ours) == len(theirs)
        our_sizes = sorted(len(b) for b in ours)
        their_sizes = sorted(len(b) for b in theirs)
        assert our_sizes == their_sizes


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 9, "samples_per_class": 2}, "multiple of super_classes_per_batch"),
        ({"batch_size": 12, "samples_per_class": 4}, "dividing the sub-batch length"),
        ({"batch_size": 8, "samples_per_class": 0}, "positive integer"),
        (
            {"batch_size": 8, "samples_per_class": 2, "super_classes_per_batch": 4},
            "exceeds the number of super",
        ),
        ({"batch_size": 8, "samples_per_class": 2, "outer_label": 2}, "2D"),
        ({"batch_size": 8, "samples_per_class": 2, "outer_label": 0}, "different columns"),
    ],
)
def test_bad_arguments_raise_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalSampler(LABELS, **kwargs)
