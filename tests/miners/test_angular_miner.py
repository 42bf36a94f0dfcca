import math

import numpy as np
import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.miners import AngularMiner
from tests.miners.helpers import assert_same_tuples_up_to_precision, clustered_batch, tuple_sets

# Raw 2D points (the angle is measured on the embeddings as given):
#   anchor 0 / positive 1: centre (1, 0.1), |x0 - x1| = 0.2
#     negative 3 at distance 0.1 from the centre -> tan = 0.2 / 0.2 -> 45°; negative 2 -> 4.25°
#   anchor 2 / positive 3: centre (0.55, 0.55), |x2 - x3| = sqrt(2.02)
#     negative 0: |n - c| = sqrt(0.505) -> tan = 1 -> 45°; negative 1: tan = 1.246 -> 51.3°
EMBEDDINGS = torch.tensor([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0], [1.1, 0.1]], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 1, 1])


def reference_angles(embeddings, labels, ref_emb, ref_labels):
    angles = {}
    for a in range(len(labels)):
        for p in range(len(ref_labels)):
            for n in range(len(ref_labels)):
                same_set = ref_emb is embeddings
                if (
                    (same_set and a == p)
                    or labels[a] != ref_labels[p]
                    or labels[a] == ref_labels[n]
                ):
                    continue
                centre = (embeddings[a] + ref_emb[p]) / 2
                tangent = torch.dist(embeddings[a], ref_emb[p]) / (
                    2 * torch.dist(ref_emb[n], centre)
                )
                angles[(a, p, n)] = math.degrees(math.atan(tangent.item()))
    return angles


@pytest.mark.parametrize(
    "angle, expected",
    [
        (20, {(0, 1, 3), (1, 0, 3), (2, 3, 0), (2, 3, 1), (3, 2, 0), (3, 2, 1)}),
        (46, {(2, 3, 1), (3, 2, 1)}),
    ],
)
def test_hand_derived_triplets(angle, expected):
    assert tuple_sets(AngularMiner(angle=angle)(EMBEDDINGS, LABELS)) == expected


def test_stats_in_degrees_over_every_triplet():
    miner = AngularMiner(angle=46, collect_stats=True)
    miner(EMBEDDINGS, LABELS)
    degrees = np.array(list(reference_angles(EMBEDDINGS, LABELS, EMBEDDINGS, LABELS).values()))
    assert len(degrees) == 8
    assert miner.average_angle == pytest.approx(degrees.mean())
    assert miner.average_angle_above_threshold == pytest.approx(degrees[degrees > 46].mean())
    assert miner.average_angle_below_threshold == pytest.approx(degrees[degrees <= 46].mean())
    assert miner.min_angle == pytest.approx(degrees.min())
    assert miner.max_angle == pytest.approx(degrees.max())
    assert miner.std_of_angle == pytest.approx(degrees.std(ddof=1))
    assert miner.angle == pytest.approx(math.radians(46))


def test_reference_set_matches_a_loop_over_triplets():
    embeddings, labels, ref_emb, ref_labels = clustered_batch(with_ref=True)
    angles = reference_angles(embeddings, labels, ref_emb, ref_labels)
    expected = {t for t, degrees in angles.items() if degrees > 30}
    assert tuple_sets(AngularMiner(angle=30)(embeddings, labels, ref_emb, ref_labels)) == expected


def test_same_triplets_and_stats_as_pml(pml):
    from pytorch_metric_learning.miners import AngularMiner as PMLAngularMiner

    for with_ref in (False, True):
        batch = clustered_batch(with_ref=with_ref)
        ours, theirs = AngularMiner(35, collect_stats=True), PMLAngularMiner(35, collect_stats=True)
        assert tuple_sets(ours(*batch)) == tuple_sets(theirs(*batch))
        # PML's pairwise distances add an epsilon of 1e-6, hence the tolerance.
        for stat in (
            "average_angle",
            "average_angle_above_threshold",
            "min_angle",
            "max_angle",
            "std_of_angle",
        ):
            assert getattr(ours, stat) == pytest.approx(getattr(theirs, stat), rel=1e-4), stat


def test_float32_and_float64_mine_the_same_triplets(dtype):
    reference = AngularMiner(30)(*clustered_batch(with_ref=True))
    mined = AngularMiner(30)(*clustered_batch(dtype=dtype, with_ref=True))
    assert_same_tuples_up_to_precision(mined, reference, dtype)


def test_labels_on_another_device(device):
    embeddings, labels = clustered_batch(device=device)
    a, p, n = AngularMiner(30)(embeddings, labels.cpu())
    assert a.device == embeddings.device
    assert (labels[a.cpu()] == labels[p.cpu()]).all() and (labels[a.cpu()] != labels[n.cpu()]).all()


@pytest.mark.parametrize(
    "distance, message",
    [
        (CosineSimilarity(), "LpDistance"),
        (LpDistance(normalize_embeddings=False), "normalize_embeddings"),
        (LpDistance(p=1), "distance.p"),
        (LpDistance(power=2), "distance.power"),
    ],
)
def test_distance_must_be_normalized_euclidean(distance, message):
    with pytest.raises(ValueError, match=message):
        AngularMiner(distance=distance)
