import itertools

import pytest

from metric_runner.distances import DotProductSimilarity
from metric_runner.miners import BatchEasyHardMiner
from tests.miners.helpers import (
    LINE_EMBEDDINGS,
    LINE_LABELS,
    assert_same_tuples_as_pml,
    assert_same_tuples_up_to_precision,
    clustered_batch,
    line_distance,
    tuple_sets,
)

STRATEGIES = ["easy", "semihard", "hard", "all"]
VALID_COMBINATIONS = [
    (pos, neg)
    for pos, neg in itertools.product(STRATEGIES, STRATEGIES)
    if not (pos == neg == "semihard") and {pos, neg} != {"semihard", "all"}
]
ALL_POS_PAIRS = {(0, 1), (0, 4), (1, 0), (1, 4), (4, 0), (4, 1), (2, 3), (3, 2)}

# On the line (see helpers); semihard comparisons are strict and ties go to the first index.
HAND_DERIVED = [
    # easy pos = closest; semihard neg = closest one farther than it. Anchor 4's easy
    # positive (1, at 4) has no negative beyond 4, so anchor 4 is dropped.
    ("easy", "semihard", {}, {(0, 1), (1, 0), (2, 3), (3, 2)}, {(0, 2), (1, 3), (2, 0), (3, 1)}),
    # hard neg first; semihard pos = farthest positive strictly closer than it.
    ("semihard", "hard", {}, {(0, 1), (3, 2)}, {(0, 2), (3, 1)}),
    ("hard", "semihard", {}, {(2, 3), (3, 2)}, {(2, 0), (3, 1)}),
    # "all" keeps every positive pair and every anchor's hardest negative, even anchors
    # without the other kind.
    ("all", "hard", {}, ALL_POS_PAIRS, {(0, 2), (1, 2), (2, 1), (3, 1), (4, 3)}),
    # ranges are inclusive and applied before choosing.
    (
        "hard",
        "hard",
        {"allowed_pos_range": (1.5, 4.5), "allowed_neg_range": (1.5, 2.5)},
        {(1, 4), (4, 1)},
        {(1, 3), (4, 3)},
    ),
    (
        "easy",
        "easy",
        {"allowed_pos_range": (1, 4)},
        {(0, 1), (1, 0), (2, 3), (3, 2), (4, 1)},
        {(0, 3), (1, 3), (2, 4), (3, 0), (4, 2)},
    ),
    # ranges do not filter an "all" side.
    (
        "all",
        "hard",
        {"allowed_pos_range": (2, 3)},
        ALL_POS_PAIRS,
        {(0, 2), (1, 2), (2, 1), (3, 1), (4, 3)},
    ),
]


@pytest.mark.parametrize("pos_strategy, neg_strategy, ranges, pos, neg", HAND_DERIVED)
def test_hand_derived_pairs_on_a_line(pos_strategy, neg_strategy, ranges, pos, neg):
    miner = BatchEasyHardMiner(pos_strategy, neg_strategy, distance=line_distance(), **ranges)
    assert tuple_sets(miner(LINE_EMBEDDINGS, LINE_LABELS)) == (pos, neg)


def test_stats_on_a_line():
    miner = BatchEasyHardMiner("easy", "semihard", distance=line_distance(), collect_stats=True)
    miner(LINE_EMBEDDINGS, LINE_LABELS)
    # kept anchors 0-3: d_ap 1 1 1 1, d_an 2 2 2 2
    assert (miner.easiest_pos_pair, miner.hardest_pos_pair) == (1, 1)
    assert (miner.easiest_neg_pair, miner.hardest_neg_pair) == (2, 2)
    assert (miner.easiest_triplet, miner.hardest_triplet) == (-1, -1)
    assert (miner.num_pos_pairs, miner.num_neg_pairs) == (4, 4)


def test_similarity_easy_positive_and_semihard_negative_follow_the_definition():
    embeddings, labels = clustered_batch(seed=5)
    distance = DotProductSimilarity()
    sim, labels_list = distance(embeddings).tolist(), labels.tolist()
    pos, neg = set(), set()
    for a, label in enumerate(labels_list):
        positives = [j for j, other in enumerate(labels_list) if other == label and j != a]
        if not positives:
            continue
        p = max(positives, key=lambda j: sim[a][j])  # easy: most similar
        negatives = [
            j for j, other in enumerate(labels_list) if other != label and sim[a][j] < sim[a][p]
        ]
        if negatives:
            pos.add((a, p))
            neg.add((a, max(negatives, key=lambda j: sim[a][j])))
    miner = BatchEasyHardMiner("easy", "semihard", distance=distance)
    assert tuple_sets(miner(embeddings, labels)) == (pos, neg)


@pytest.mark.parametrize("pos_strategy, neg_strategy", VALID_COMBINATIONS)
def test_same_pairs_as_pml(pml, pos_strategy, neg_strategy):
    from pytorch_metric_learning.miners import BatchEasyHardMiner as PMLBatchEasyHardMiner

    ranges = {"allowed_pos_range": (0.3, 1.2), "allowed_neg_range": (0.2, 0.9)}
    assert_same_tuples_as_pml(
        lambda distance: BatchEasyHardMiner(
            pos_strategy, neg_strategy, distance=distance, **ranges
        ),
        lambda distance: PMLBatchEasyHardMiner(
            pos_strategy, neg_strategy, distance=distance, **ranges
        ),
        seeds=(0,),
    )
    batch = clustered_batch(with_ref=True)
    ours = BatchEasyHardMiner(pos_strategy, neg_strategy, collect_stats=True)
    theirs = PMLBatchEasyHardMiner(pos_strategy, neg_strategy, collect_stats=True)
    assert tuple_sets(ours(*batch)) == tuple_sets(theirs(*batch))
    for stat in ours._record_these_stats:
        assert getattr(ours, stat) == pytest.approx(getattr(theirs, stat), rel=1e-6), stat


def test_float32_and_float64_mine_the_same_pairs(dtype):
    reference = BatchEasyHardMiner("hard", "semihard")(*clustered_batch(with_ref=True))
    mined = BatchEasyHardMiner("hard", "semihard")(*clustered_batch(dtype=dtype, with_ref=True))
    assert_same_tuples_up_to_precision(mined, reference, dtype)


def test_labels_on_another_device(device):
    embeddings, labels = clustered_batch(device=device)
    a1, p, a2, n = BatchEasyHardMiner()(embeddings, labels.cpu())
    assert a1.device == embeddings.device
    assert (labels[a1.cpu()] == labels[p.cpu()]).all() and (
        labels[a2.cpu()] != labels[n.cpu()]
    ).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pos_strategy": "medium"}, "pos_strategy must be one of"),
        ({"neg_strategy": "hardest"}, "neg_strategy must be one of"),
        ({"pos_strategy": "semihard", "neg_strategy": "semihard"}, "cannot both be"),
        ({"pos_strategy": "semihard", "neg_strategy": "all"}, "cannot be combined"),
        ({"pos_strategy": "all", "neg_strategy": "semihard"}, "cannot be combined"),
    ],
)
def test_invalid_strategies_raise_like_pml(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchEasyHardMiner(**kwargs)
