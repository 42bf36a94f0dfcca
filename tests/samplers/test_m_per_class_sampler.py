import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from metric_runner.samplers import MPerClassSampler
from metric_runner.samplers.m_per_class_sampler import epoch_generator, random_subsets
from metric_runner.utils import common_functions as c_f

# Imbalanced: class 1 has fewer samples (2) than m=3 used below; class 4 has one sample.
LABELS = [0] * 5 + [1] * 2 + [2] * 7 + [3] * 4 + [4] * 1 + [5] * 6
LABEL_OF = torch.tensor(LABELS)


def batches(indices, batch_size):
    indices = torch.tensor(indices)
    return indices.reshape(-1, batch_size)


@pytest.mark.parametrize("m, batch_size", [(3, 9), (2, 12), (1, 6), (3, 18)])
def test_every_batch_has_batch_size_over_m_classes_with_m_samples_each(m, batch_size):
    for seed in range(20):
        np.random.seed(seed)
        sampler = MPerClassSampler(LABELS, m, batch_size=batch_size, length_before_new_iter=200)
        indices = list(sampler)
        assert len(indices) == len(sampler) == 200 - 200 % batch_size
        for batch in batches(indices, batch_size):
            groups = batch.reshape(-1, m)
            group_labels = LABEL_OF[groups]
            # each group of m is one class, and the classes of a batch are distinct
            assert (group_labels == group_labels[:, :1]).all()
            assert len(set(group_labels[:, 0].tolist())) == batch_size // m
            for group, label in zip(groups, group_labels[:, 0]):
                class_size = LABELS.count(int(label))
                if class_size >= m:
                    assert len(set(group.tolist())) == m, "drew with replacement from a big class"


def test_without_batch_size_each_pass_visits_every_class_once():
    m = 2
    num_classes = len(set(LABELS))
    np.random.seed(0)
    sampler = MPerClassSampler(LABELS, m, length_before_new_iter=100)
    indices = list(sampler)
    single_pass = m * num_classes
    assert len(indices) == len(sampler) == 100 - 100 % single_pass
    for one_pass in batches(indices, single_pass):
        pass_labels = LABEL_OF[one_pass].reshape(num_classes, m)
        assert (pass_labels == pass_labels[:, :1]).all()
        assert sorted(pass_labels[:, 0].tolist()) == list(range(num_classes))


def test_length_rounding_matches_hand_values():
    labels = [0] * 5 + [1] * 2 + [2] * 7 + [3] * 3  # one pass of m=2 is 8 indices
    assert len(MPerClassSampler(labels, 2)) == 100000  # 100000 is a multiple of 8
    assert len(MPerClassSampler(labels, 2, length_before_new_iter=21)) == 16
    # shorter than one pass: kept as is, and iteration yields exactly that many
    short = MPerClassSampler(labels, 2, length_before_new_iter=5)
    assert len(short) == len(list(short)) == 5
    assert len(MPerClassSampler(labels, 2, batch_size=4, length_before_new_iter=21)) == 20
    assert len(MPerClassSampler(labels, 2, batch_size=8, length_before_new_iter=21)) == 16


@pytest.mark.parametrize(
    "kwargs",
    [
        {"m": 2},
        {"m": 3, "length_before_new_iter": 1000},
        {"m": 2, "batch_size": 6, "length_before_new_iter": 1000},
        {"m": 1, "batch_size": 5, "length_before_new_iter": 33},
    ],
)
def test_length_matches_pml(pml, kwargs):
    from pytorch_metric_learning.samplers import MPerClassSampler as PMLMPerClassSampler

    assert len(MPerClassSampler(LABELS, **kwargs)) == len(PMLMPerClassSampler(LABELS, **kwargs))


def test_reproducible_under_numpy_seed_and_generator():
    def epoch(seed=None, generator=None):
        if seed is not None:
            np.random.seed(seed)
        return list(MPerClassSampler(LABELS, 3, 9, 90, generator=generator))

    assert epoch(seed=5) == epoch(seed=5)
    assert epoch(seed=5) != epoch(seed=6)
    first = epoch(generator=torch.Generator().manual_seed(1))
    np.random.seed(123)  # the global RNG must not matter when a generator is given
    assert first == epoch(generator=torch.Generator().manual_seed(1))
    # successive epochs of one sampler differ
    sampler = MPerClassSampler(LABELS, 3, 9, 90, generator=torch.Generator().manual_seed(1))
    assert list(sampler) != list(sampler)


def test_classes_and_samples_are_drawn_uniformly():
    # 6 classes, 2 per batch: each class is in a batch with probability 1/3. Within class 2
    # (7 samples, m=3), each sample appears in a group with probability 3/7.
    generator = torch.Generator().manual_seed(0)
    m, batch_size, length = 3, 6, 6000
    indices = torch.tensor(
        list(MPerClassSampler(LABELS, m, batch_size, length, generator=generator))
    )
    groups = indices.reshape(-1, m)
    num_groups, num_batches = len(groups), length // batch_size
    class_counts = torch.bincount(LABEL_OF[groups[:, 0]], minlength=6).double()
    torch.testing.assert_close(
        class_counts / num_batches, torch.full((6,), 1 / 3, dtype=torch.float64), atol=0.04, rtol=0
    )
    class_2_groups = groups[LABEL_OF[groups[:, 0]] == 2]
    members = torch.where(LABEL_OF == 2)[0]
    presence = (class_2_groups.unsqueeze(2) == members).any(dim=1).double().mean(dim=0)
    torch.testing.assert_close(
        presence, torch.full((7,), 3 / 7, dtype=torch.float64), atol=0.06, rtol=0
    )
    assert num_groups == length // m


def test_random_subsets_are_uniform_distinct_sets():
    generator = torch.Generator().manual_seed(0)
    picks = random_subsets(torch.full((20000,), 5), 2, generator)
    assert (picks[:, 0] != picks[:, 1]).all()
    assert ((picks >= 0) & (picks < 5)).all()
    # all 10 unordered pairs equally likely, and both orders equally likely
    pair_codes = picks.min(dim=1).values * 5 + picks.max(dim=1).values
    pair_freq = torch.bincount(pair_codes, minlength=25).double() / len(picks)
    expected = torch.tensor(
        [0.1 if i < j else 0.0 for i in range(5) for j in range(5)], dtype=torch.float64
    )
    torch.testing.assert_close(pair_freq, expected, atol=0.015, rtol=0)
    assert abs((picks[:, 0] < picks[:, 1]).double().mean().item() - 0.5) < 0.02
    # a population smaller than the subset is drawn with replacement, inside the population
    small = random_subsets(torch.tensor([2, 1]), 4, generator)
    assert ((small[0] >= 0) & (small[0] < 2)).all() and (small[1] == 0).all()


@pytest.mark.parametrize(
    "labels",
    [np.array(LABELS), torch.tensor(LABELS), [f"class_{x}" for x in LABELS]],
    ids=["numpy", "tensor", "strings"],
)
def test_accepts_numpy_tensor_and_non_numeric_labels(labels):
    np.random.seed(0)
    indices = list(MPerClassSampler(labels, 3, 9, 90))
    assert all(isinstance(i, int) for i in indices)
    groups = LABEL_OF[torch.tensor(indices)].reshape(-1, 3)
    assert (groups == groups[:, :1]).all()


def test_drives_a_dataloader():
    dataset = TensorDataset(torch.arange(len(LABELS)), LABEL_OF)
    np.random.seed(0)
    loader = DataLoader(dataset, batch_size=6, sampler=MPerClassSampler(LABELS, 2, 6, 60))
    label_batches = [labels for _, labels in loader]
    assert len(label_batches) == 10
    for labels in label_batches:
        assert sorted(torch.bincount(labels, minlength=6).tolist(), reverse=True) == [
            2,
            2,
            2,
            0,
            0,
            0,
        ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"m": 2, "batch_size": 5}, "multiple of m"),
        ({"m": 2, "batch_size": 14}, "only 6"),
        ({"m": 2, "batch_size": 4, "length_before_new_iter": 3}, "at least batch_size"),
        ({"m": 0}, "positive"),
    ],
)
def test_bad_arguments_raise_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MPerClassSampler(LABELS, **kwargs)


def test_draws_come_from_common_functions_numpy_random(monkeypatch):
    def epoch(seed):
        monkeypatch.setattr(c_f, "NUMPY_RANDOM", np.random.RandomState(seed))
        torch.manual_seed(seed + 1)  # torch's global generator plays no part
        return list(MPerClassSampler(LABELS, 3, 9, 90))

    assert epoch(0) == epoch(0) != epoch(1)
    generator = torch.Generator()
    assert epoch_generator(generator) is generator


@pytest.mark.parametrize(
    "kwargs, num_iters",
    [
        ({"m": 4, "batch_size": 8, "length_before_new_iter": 100}, 12),
        ({"m": 4, "length_before_new_iter": 100}, 8),
        ({"m": 3, "length_before_new_iter": 7}, 1),
    ],
)
def test_calculate_num_iters_counts_batches_or_class_passes(kwargs, num_iters):
    # 3 classes of 10: a pass over the classes is m * 3 indices.
    sampler = MPerClassSampler([0] * 10 + [1] * 10 + [2] * 10, **kwargs)
    assert sampler.calculate_num_iters() == num_iters
