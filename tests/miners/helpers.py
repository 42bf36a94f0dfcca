"""Shared inputs and comparisons for the miner tests."""

import importlib

import torch

from metric_runner import distances
from tests.helpers import clustered_embeddings

# Points on a line, compared without normalization, so every distance is a small integer:
#      0  1  2  3  4
# 0 [  0, 1, 2, 3, 5]
# 1 [  1, 0, 1, 2, 4]
# 2 [  2, 1, 0, 1, 3]
# 3 [  3, 2, 1, 0, 2]
# 4 [  5, 4, 3, 2, 0]
LINE_EMBEDDINGS = torch.tensor([[0.0], [1.0], [2.0], [3.0], [5.0]], dtype=torch.float64)
LINE_LABELS = torch.tensor([0, 0, 1, 1, 0])


def line_distance():
    return distances.LpDistance(normalize_embeddings=False)


def tuple_sets(mining_output):
    """Mined tuples as sets (order is not part of the contract): a set of (a, p, n) for
    triplets, or (set of positive pairs, set of negative pairs) for pairs."""
    columns = [t.tolist() for t in mining_output]
    if len(columns) == 3:
        return set(zip(*columns))
    return set(zip(columns[0], columns[1])), set(zip(columns[2], columns[3]))


def clustered_batch(dtype=torch.float64, with_ref=False, seed=0, device="cpu"):
    """(embeddings, labels[, ref_emb, ref_labels]) with a singleton class, so anchors without
    positives are exercised too."""
    embeddings, labels = clustered_embeddings(
        num_classes=6, per_class=4, dim=8, seed=seed, dtype=dtype
    )
    labels = labels.clone()
    labels[0] = 99
    batch = [embeddings.detach().to(device), labels]
    if with_ref:
        ref_emb, ref_labels = clustered_embeddings(
            num_classes=7, per_class=3, dim=8, seed=seed + 100, dtype=dtype
        )
        batch += [ref_emb.detach().to(device), ref_labels]
    return batch


def distance_pairs():
    """(ours, PML's) for a distance and a similarity, non-default where it matters."""
    pml_distances = importlib.import_module("pytorch_metric_learning.distances")
    return [
        (distances.LpDistance(p=1, power=2), pml_distances.LpDistance(p=1, power=2)),
        (distances.CosineSimilarity(), pml_distances.CosineSimilarity()),
    ]


def assert_same_tuples_as_pml(our_miner_fn, pml_miner_fn, seeds=(0, 1), pairs=None):
    """Mined sets equal PML's (the `pml` fixture must be requested) for a distance and a
    similarity, with and without a reference set. The *_fn build a miner from a distance."""
    for seed in seeds:
        for with_ref in (False, True):
            batch = clustered_batch(with_ref=with_ref, seed=seed)
            for ours, theirs in pairs or distance_pairs():
                expected = tuple_sets(pml_miner_fn(theirs)(*batch))
                assert tuple_sets(our_miner_fn(ours)(*batch)) == expected, (seed, with_ref, ours)


def assert_same_tuples_up_to_precision(mined, reference, dtype):
    """Mined sets equal the float64 reference; in float16 a few tuples within rounding of a
    threshold may flip (at most 5% of them)."""
    mined_sets, reference_sets = tuple_sets(mined), tuple_sets(reference)
    if len(mined) == 3:
        mined_sets, reference_sets = (mined_sets,), (reference_sets,)
    for ours, expected in zip(mined_sets, reference_sets):
        if dtype == torch.float16:
            assert len(ours ^ expected) <= 0.05 * len(expected) + 1
        else:
            assert ours == expected
