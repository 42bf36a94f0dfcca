import pytest
import torch

from metric_runner.distances import DotProductSimilarity
from metric_runner.miners import TripletMarginMiner
from tests.miners.helpers import (
    LINE_EMBEDDINGS,
    LINE_LABELS,
    assert_same_tuples_as_pml,
    assert_same_tuples_up_to_precision,
    clustered_batch,
    line_distance,
    tuple_sets,
)

# Triplet margins m = d_an - d_ap on the line (see helpers), with margin 1.5:
#   m = 2 (easy):      (0,1,3) (2,3,4) (3,2,0)
#   0 < m <= 1.5:      (0,1,2) (1,0,3) (2,3,0) (3,2,1) (3,2,4)
#   m <= 0 (hard):     (0,4,2) (0,4,3) (1,0,2) (1,4,2) (1,4,3) (4,0,2) (4,0,3) (4,1,2) (4,1,3) (2,3,1)
EASY = {(0, 1, 3), (2, 3, 4), (3, 2, 0)}
SEMIHARD = {(0, 1, 2), (1, 0, 3), (2, 3, 0), (3, 2, 1), (3, 2, 4)}
HARD = {
    (0, 4, 2),
    (0, 4, 3),
    (1, 0, 2),
    (1, 4, 2),
    (1, 4, 3),
    (4, 0, 2),
    (4, 0, 3),
    (4, 1, 2),
    (4, 1, 3),
    (2, 3, 1),
}


@pytest.mark.parametrize(
    "type_of_triplets, expected",
    [("easy", EASY), ("semihard", SEMIHARD), ("hard", HARD), ("all", SEMIHARD | HARD)],
)
def test_hand_derived_triplets_on_a_line(type_of_triplets, expected):
    miner = TripletMarginMiner(
        margin=1.5, type_of_triplets=type_of_triplets, distance=line_distance()
    )
    assert tuple_sets(miner(LINE_EMBEDDINGS, LINE_LABELS)) == expected


def test_stats_average_every_triplet_before_selection():
    miner = TripletMarginMiner(
        margin=1.5, type_of_triplets="easy", distance=line_distance(), collect_stats=True
    )
    miner(LINE_EMBEDDINGS, LINE_LABELS)
    # Sums over the 18 triplets listed above: margins -7, d_ap 46, d_an 39.
    assert miner.avg_triplet_margin == pytest.approx(-7 / 18)
    assert miner.pos_pair_dist == pytest.approx(46 / 18)
    assert miner.neg_pair_dist == pytest.approx(39 / 18)
    assert miner.num_triplets == 3


@pytest.mark.parametrize("type_of_triplets", ["easy", "semihard", "hard", "all"])
def test_similarity_margin_is_s_ap_minus_s_an(type_of_triplets):
    embeddings, labels = clustered_batch(seed=2)
    distance = DotProductSimilarity()
    mat, labels_list = distance(embeddings).tolist(), labels.tolist()
    margin = 0.7
    expected = set()
    for a in range(len(labels)):
        for p in range(len(labels)):
            for n in range(len(labels)):
                if a == p or labels_list[a] != labels_list[p] or labels_list[a] == labels_list[n]:
                    continue
                m = mat[a][p] - mat[a][n]
                keep = {
                    "easy": m > margin,
                    "semihard": 0 < m <= margin,
                    "hard": m <= 0,
                    "all": m <= margin,
                }[type_of_triplets]
                if keep:
                    expected.add((a, p, n))
    miner = TripletMarginMiner(margin=margin, type_of_triplets=type_of_triplets, distance=distance)
    assert tuple_sets(miner(embeddings, labels)) == expected


@pytest.mark.parametrize("type_of_triplets", ["easy", "semihard", "hard", "all"])
def test_same_triplets_and_stats_as_pml(pml, type_of_triplets):
    from pytorch_metric_learning.miners import TripletMarginMiner as PMLTripletMarginMiner

    assert_same_tuples_as_pml(
        lambda distance: TripletMarginMiner(0.3, type_of_triplets, distance=distance),
        lambda distance: PMLTripletMarginMiner(0.3, type_of_triplets, distance=distance),
    )
    ours = TripletMarginMiner(0.3, type_of_triplets, collect_stats=True)
    theirs = PMLTripletMarginMiner(0.3, type_of_triplets, collect_stats=True)
    batch = clustered_batch(with_ref=True)
    ours(*batch), theirs(*batch)
    for stat in ("avg_triplet_margin", "pos_pair_dist", "neg_pair_dist"):
        assert getattr(ours, stat) == pytest.approx(getattr(theirs, stat), rel=1e-6)


def test_float32_and_float64_mine_the_same_triplets(dtype):
    reference = TripletMarginMiner(0.3, "semihard")(*clustered_batch(with_ref=True))
    mined = TripletMarginMiner(0.3, "semihard")(*clustered_batch(dtype=dtype, with_ref=True))
    assert_same_tuples_up_to_precision(mined, reference, dtype)


def test_labels_on_another_device(device):
    embeddings, labels = clustered_batch(device=device)
    a, p, n = TripletMarginMiner(0.3)(embeddings, labels.cpu())
    assert a.device == embeddings.device
    a, p, n = a.cpu(), p.cpu(), n.cpu()
    assert (
        torch.all(labels[a] == labels[p])
        and torch.all(labels[a] != labels[n])
        and torch.all(a != p)
    )


def test_unknown_type_of_triplets_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'all', 'hard', 'semihard', 'easy'"):
        TripletMarginMiner(type_of_triplets="semi-hard")
