import pytest
import torch

from metric_runner.distances import CosineSimilarity, DotProductSimilarity
from metric_runner.miners import MultiSimilarityMiner
from tests.miners.helpers import (
    LINE_EMBEDDINGS,
    LINE_LABELS,
    assert_same_tuples_as_pml,
    assert_same_tuples_up_to_precision,
    clustered_batch,
    line_distance,
    tuple_sets,
)


def reference_pairs(mat, labels, epsilon, is_inverted):
    """The paper's rule, one pair at a time; an anchor lacking positives or negatives
    selects nothing."""
    n = len(labels)
    pos, neg = set(), set()
    for a in range(n):
        pos_cols = [j for j in range(n) if j != a and labels[j] == labels[a]]
        neg_cols = [j for j in range(n) if labels[j] != labels[a]]
        if not pos_cols or not neg_cols:
            continue
        pos_vals = [mat[a, j].item() for j in pos_cols]
        neg_vals = [mat[a, j].item() for j in neg_cols]
        if is_inverted:
            hardest_pos, hardest_neg = min(pos_vals), max(neg_vals)
            pos |= {(a, j) for j, v in zip(pos_cols, pos_vals) if v < hardest_neg + epsilon}
            neg |= {(a, j) for j, v in zip(neg_cols, neg_vals) if v > hardest_pos - epsilon}
        else:
            hardest_pos, hardest_neg = max(pos_vals), min(neg_vals)
            pos |= {(a, j) for j, v in zip(pos_cols, pos_vals) if v > hardest_neg - epsilon}
            neg |= {(a, j) for j, v in zip(neg_cols, neg_vals) if v < hardest_pos + epsilon}
    return pos, neg


def test_hand_derived_pairs_on_a_line():
    # Distances: a negative is kept if d_an < max d_ap + 0.5, a positive if d_ap > min d_an - 0.5.
    # a0: max pos 5, min neg 2 -> negatives 2, 3; positive 4 (1 is not > 1.5).
    # a1: max pos 4, min neg 1 -> negatives 2, 3; positives 0, 4.
    # a2: max pos 1, min neg 1 -> negative 1 only; positive 3 (1 > 0.5).
    # a3: max pos 1, min neg 2 -> no negative below 1.5; positive 2 is not > 1.5.
    # a4: max pos 5, min neg 2 -> negatives 2, 3; positives 0, 1.
    miner = MultiSimilarityMiner(epsilon=0.5, distance=line_distance())
    pos, neg = tuple_sets(miner(LINE_EMBEDDINGS, LINE_LABELS))
    assert pos == {(0, 4), (1, 0), (1, 4), (2, 3), (4, 0), (4, 1)}
    assert neg == {(0, 2), (0, 3), (1, 2), (1, 3), (2, 1), (4, 2), (4, 3)}


def test_similarity_pairs_match_a_loop_over_pairs():
    embeddings, labels = clustered_batch(seed=3)
    distance = DotProductSimilarity()
    miner = MultiSimilarityMiner(epsilon=0.3, distance=distance)
    expected = reference_pairs(distance(embeddings), labels, 0.3, is_inverted=True)
    assert tuple_sets(miner(embeddings, labels)) == expected


def test_default_distance_is_cosine_similarity():
    assert isinstance(MultiSimilarityMiner().distance, CosineSimilarity)


def test_same_pairs_as_pml(pml):
    from pytorch_metric_learning.miners import MultiSimilarityMiner as PMLMultiSimilarityMiner

    assert_same_tuples_as_pml(
        lambda distance: MultiSimilarityMiner(epsilon=0.3, distance=distance),
        lambda distance: PMLMultiSimilarityMiner(epsilon=0.3, distance=distance),
    )


def test_float32_and_float64_mine_the_same_pairs(dtype):
    reference = MultiSimilarityMiner(epsilon=0.2)(*clustered_batch(with_ref=True))
    mined = MultiSimilarityMiner(epsilon=0.2)(*clustered_batch(dtype=dtype, with_ref=True))
    assert_same_tuples_up_to_precision(mined, reference, dtype)


def test_labels_on_another_device_and_stats(device):
    embeddings, labels = clustered_batch(device=device)
    miner = MultiSimilarityMiner(epsilon=0.2, collect_stats=True)
    a1, p, a2, n = miner(embeddings, labels.cpu())
    assert a1.device == embeddings.device
    assert (miner.num_pos_pairs, miner.num_neg_pairs) == (len(a1), len(a2))
    assert torch.all(labels[a1.cpu()] == labels[p.cpu()])
    assert torch.all(labels[a2.cpu()] != labels[n.cpu()])


def test_missing_labels_is_a_clear_error():
    with pytest.raises(ValueError, match="needs labels"):
        MultiSimilarityMiner()(LINE_EMBEDDINGS, None)
