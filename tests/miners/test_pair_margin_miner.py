import pytest

from metric_runner.distances import CosineSimilarity
from metric_runner.miners import PairMarginMiner
from tests.miners.helpers import (
    LINE_EMBEDDINGS,
    LINE_LABELS,
    assert_same_tuples_as_pml,
    assert_same_tuples_up_to_precision,
    clustered_batch,
    line_distance,
    tuple_sets,
)


def test_hand_derived_pairs_and_stats_on_a_line():
    # Positives farther than 1 and negatives closer than 2 (strict), from the matrix in helpers.
    miner = PairMarginMiner(
        pos_margin=1, neg_margin=2, distance=line_distance(), collect_stats=True
    )
    pos, neg = tuple_sets(miner(LINE_EMBEDDINGS, LINE_LABELS))
    assert pos == {(0, 4), (1, 4), (4, 0), (4, 1)}
    assert neg == {(1, 2), (2, 1)}
    # Means over all 8 positive pairs (1+5+1+4+5+4+1+1) and all 12 negative pairs.
    assert miner.pos_pair_dist == pytest.approx(22 / 8)
    assert miner.neg_pair_dist == pytest.approx(26 / 12)


def test_similarity_flips_the_comparisons():
    embeddings, labels = clustered_batch(seed=1)
    distance = CosineSimilarity()
    sim, labels_list = distance(embeddings).tolist(), labels.tolist()
    n = len(labels_list)
    pos = {
        (a, j)
        for a in range(n)
        for j in range(n)
        if a != j and labels_list[a] == labels_list[j] and sim[a][j] < 0.9
    }
    neg = {
        (a, j)
        for a in range(n)
        for j in range(n)
        if labels_list[a] != labels_list[j] and sim[a][j] > 0.1
    }
    miner = PairMarginMiner(pos_margin=0.9, neg_margin=0.1, distance=distance)
    assert tuple_sets(miner(embeddings, labels)) == (pos, neg)


def test_same_pairs_and_stats_as_pml(pml):
    from pytorch_metric_learning.miners import PairMarginMiner as PMLPairMarginMiner

    assert_same_tuples_as_pml(
        lambda distance: PairMarginMiner(0.5, 0.6, distance=distance),
        lambda distance: PMLPairMarginMiner(0.5, 0.6, distance=distance),
    )
    ours, theirs = (
        PairMarginMiner(0.5, 1.1, collect_stats=True),
        PMLPairMarginMiner(0.5, 1.1, collect_stats=True),
    )
    batch = clustered_batch(with_ref=True)
    assert tuple_sets(ours(*batch)) == tuple_sets(theirs(*batch))
    assert ours.pos_pair_dist == pytest.approx(theirs.pos_pair_dist, rel=1e-6)
    assert ours.neg_pair_dist == pytest.approx(theirs.neg_pair_dist, rel=1e-6)


def test_float32_and_float64_mine_the_same_pairs(dtype):
    reference = PairMarginMiner(0.5, 1.1)(*clustered_batch(with_ref=True))
    mined = PairMarginMiner(0.5, 1.1)(*clustered_batch(dtype=dtype, with_ref=True))
    assert_same_tuples_up_to_precision(mined, reference, dtype)


def test_labels_on_another_device(device):
    embeddings, labels = clustered_batch(device=device)
    a1, p, a2, n = PairMarginMiner(0.5, 1.1)(embeddings, labels.cpu())
    assert a1.device == embeddings.device
    assert (labels[a1.cpu()] == labels[p.cpu()]).all() and (
        labels[a2.cpu()] != labels[n.cpu()]
    ).all()
