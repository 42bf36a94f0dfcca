import pytest

from metric_runner.distances import DotProductSimilarity
from metric_runner.miners import BatchHardMiner
from tests.miners.helpers import (
    LINE_EMBEDDINGS,
    LINE_LABELS,
    assert_same_tuples_as_pml,
    assert_same_tuples_up_to_precision,
    clustered_batch,
    line_distance,
    tuple_sets,
)


def test_hand_derived_triplets_and_stats_on_a_line():
    # Farthest positive / closest negative per anchor (see the matrix in helpers); anchor 3's
    # closest negatives 1 and 4 tie at 2 and the first wins.
    miner = BatchHardMiner(distance=line_distance(), collect_stats=True)
    mined = miner(LINE_EMBEDDINGS, LINE_LABELS)
    assert tuple_sets(mined) == {(0, 4, 2), (1, 4, 2), (2, 3, 1), (3, 2, 1), (4, 0, 3)}
    # d_ap: 5 4 1 1 5; d_an: 2 1 1 2 2; d_ap - d_an: 3 3 0 -1 3
    assert (miner.hardest_pos_pair, miner.easiest_pos_pair) == (5, 1)
    assert (miner.hardest_neg_pair, miner.easiest_neg_pair) == (1, 2)
    assert (miner.hardest_triplet, miner.easiest_triplet) == (3, -1)
    assert miner.num_triplets == 5


def test_similarity_picks_lowest_positive_and_highest_negative():
    embeddings, labels = clustered_batch(seed=4)
    distance = DotProductSimilarity()
    sim = distance(embeddings)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    expected = set()
    for a in range(len(labels)):
        positives = [j for j in range(len(labels)) if same[a, j] and j != a]
        negatives = [j for j in range(len(labels)) if not same[a, j]]
        if positives:
            p = min(positives, key=lambda j: sim[a, j].item())
            n = max(negatives, key=lambda j: sim[a, j].item())
            expected.add((a, p, n))
    assert tuple_sets(BatchHardMiner(distance=distance)(embeddings, labels)) == expected


def test_anchors_without_a_positive_are_dropped():
    a, _, _ = BatchHardMiner()(*clustered_batch())
    assert 0 not in a.tolist()  # sample 0 is a singleton class
    assert len(a) == 23


def test_same_triplets_and_stats_as_pml(pml):
    from pytorch_metric_learning.miners import BatchHardMiner as PMLBatchHardMiner

    assert_same_tuples_as_pml(
        lambda distance: BatchHardMiner(distance=distance),
        lambda distance: PMLBatchHardMiner(distance=distance),
    )
    ranges = {"allowed_pos_range": (0.3, 1.2), "allowed_neg_range": (0.2, 0.9)}
    batch = clustered_batch(with_ref=True)
    ours, theirs = (
        BatchHardMiner(collect_stats=True, **ranges),
        PMLBatchHardMiner(collect_stats=True, **ranges),
    )
    assert tuple_sets(ours(*batch)) == tuple_sets(theirs(*batch))
    for stat in ours._record_these_stats:
        assert getattr(ours, stat) == pytest.approx(getattr(theirs, stat), rel=1e-6), stat


def test_float32_and_float64_mine_the_same_triplets(dtype):
    reference = BatchHardMiner()(*clustered_batch(with_ref=True))
    mined = BatchHardMiner()(*clustered_batch(dtype=dtype, with_ref=True))
    assert_same_tuples_up_to_precision(mined, reference, dtype)


def test_labels_on_another_device(device):
    embeddings, labels = clustered_batch(device=device)
    a, p, n = BatchHardMiner()(embeddings, labels.cpu())
    assert a.device == embeddings.device and len(a) == 23


def test_strategies_are_fixed():
    miner = BatchHardMiner()
    assert (miner.pos_strategy, miner.neg_strategy) == ("hard", "hard")
    with pytest.raises(TypeError):
        BatchHardMiner(pos_strategy="easy")
