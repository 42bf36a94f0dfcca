import collections

import numpy as np
import pytest
import torch

from metric_runner.miners import EmbeddingsAlreadyPackagedAsTriplets
from metric_runner.samplers import FixedSetOfTriplets

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])  # class 3 is a singleton


def test_triplets_are_valid_and_fixed_across_epochs():
    np.random.seed(0)
    sampler = FixedSetOfTriplets(LABELS, 200)
    first, second = list(sampler), list(sampler)
    assert len(sampler) == len(first) == 600
    assert first != second  # the triplet order is reshuffled each epoch
    as_triplets = lambda flat: sorted(map(tuple, np.array(flat).reshape(-1, 3).tolist()))  # noqa: E731
    assert as_triplets(first) == as_triplets(second)  # but the set is fixed
    for a, p, n in as_triplets(first):
        assert LABELS[a] == LABELS[p] != LABELS[n]
        assert a != p or LABELS[a] == 3  # only a singleton pairs a sample with itself


def test_classes_and_negative_classes_are_uniform():
    np.random.seed(0)
    triplets = FixedSetOfTriplets(LABELS, 8000).fixed_set_of_triplets
    anchor_classes = collections.Counter(LABELS[triplets[:, 0]].tolist())
    for count in anchor_classes.values():
        assert abs(count / 8000 - 1 / 4) < 0.02
    # anchors of class 3: negatives spread evenly over the other three classes, not over samples
    negative_classes = collections.Counter(
        LABELS[triplets[LABELS[triplets[:, 0]] == 3, 2]].tolist()
    )
    total = sum(negative_classes.values())
    for count in negative_classes.values():
        assert abs(count / total - 1 / 3) < 0.04


def test_reproducible_under_numpy_seed_and_accepts_tensors():
    np.random.seed(1)
    first = list(FixedSetOfTriplets(torch.tensor(LABELS), 10))
    np.random.seed(1)
    assert list(FixedSetOfTriplets(LABELS.tolist(), 10)) == first
    assert all(isinstance(i, int) for i in first)


def test_pairs_with_the_packaged_triplets_miner():
    np.random.seed(0)
    indices = list(FixedSetOfTriplets(LABELS, 4))
    embeddings = torch.randn(len(LABELS), 3)[indices]
    a, p, n = EmbeddingsAlreadyPackagedAsTriplets()(embeddings, torch.as_tensor(LABELS)[indices])
    labels = LABELS[indices]
    assert (labels[a.numpy()] == labels[p.numpy()]).all() and (
        labels[a.numpy()] != labels[n.numpy()]
    ).all()


def test_same_length_as_pml(pml):
    from pytorch_metric_learning.samplers import FixedSetOfTriplets as PMLFixedSetOfTriplets

    assert len(FixedSetOfTriplets(LABELS, 7)) == len(PMLFixedSetOfTriplets(LABELS, 7)) == 21


@pytest.mark.parametrize(
    "labels, num_triplets, message", [([0, 0, 0], 5, "at least 2 classes"), (LABELS, 0, "positive")]
)
def test_bad_arguments_raise_a_clear_error(labels, num_triplets, message):
    with pytest.raises(ValueError, match=message):
        FixedSetOfTriplets(labels, num_triplets)
