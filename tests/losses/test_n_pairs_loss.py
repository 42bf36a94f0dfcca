import math

import pytest
import torch

from metric_runner.distances import LpDistance
from metric_runner.losses import NPairsLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h

# Classes 0 and 1 have three members, class 2 one (no pair), class 3 two.
LABELS = [1, 0, 1, 2, 0, 3, 1, 3, 0]


def batch():
    angles = [0, 35, 80, 120, 170, 200, 240, 280, 320]
    points = [
        [math.cos(math.radians(a)), 0.5 * math.sin(math.radians(a)), 0.1 * i]
        for i, a in enumerate(angles)
    ]
    return torch.tensor(points, dtype=torch.float64), torch.tensor(LABELS)


def hand_losses(embeddings, pairs, similarity=True):
    """Cross-entropy of each anchor over its similarity (or negated distance) to every pair's
    positive, its own positive being the target; embeddings are L2-normalized first."""
    x = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in embeddings.tolist()]
    logits = []
    for a, _ in pairs:
        row = []
        for _, p in pairs:
            row.append(
                sum(u * v for u, v in zip(x[a], x[p])) if similarity else -math.dist(x[a], x[p])
            )
        logits.append(row)
    return [math.log(sum(math.exp(v) for v in row)) - row[k] for k, row in enumerate(logits)]


def test_hand_computed_first_pair_of_each_label():
    embeddings, labels = batch()
    # The first positive pair of each label in row-major order: (1, 4), (0, 2), (5, 7).
    pairs = [(1, 4), (0, 2), (5, 7)]
    out = NPairsLoss(reducer=DoNothingReducer())(embeddings, labels)["loss"]
    assert out["reduction_type"] == "element" and out["indices"].tolist() == [1, 0, 5]
    torch.testing.assert_close(
        out["losses"], torch.tensor(hand_losses(embeddings, pairs), dtype=torch.float64)
    )
    expected = hand_losses(embeddings, pairs, similarity=False)
    got = NPairsLoss(distance=LpDistance())(embeddings, labels)
    assert got.item() == pytest.approx(sum(expected) / 3, rel=1e-12)


def test_mined_tuples_choose_the_first_mined_pair_of_each_label():
    embeddings, labels = batch()
    triplets = (torch.tensor([6, 2, 8, 0]), torch.tensor([0, 6, 1, 6]), torch.tensor([1, 1, 3, 4]))
    out = NPairsLoss(reducer=DoNothingReducer())(embeddings, labels, triplets)["loss"]
    assert out["indices"].tolist() == [8, 6]  # label 0 first, then label 1
    torch.testing.assert_close(
        out["losses"], torch.tensor(hand_losses(embeddings, [(8, 1), (6, 0)]), dtype=torch.float64)
    )


def test_num_pairs_statistic():
    embeddings, labels = batch()
    loss_fn = NPairsLoss(collect_stats=True)
    loss_fn(embeddings, labels)
    assert loss_fn.num_pairs == 3


RECIPES = [
    lambda lib: {},
    lambda lib: {"distance": lib.distances.LpDistance(), "reducer": lib.reducers.SumReducer()},
    lambda lib: {
        "distance": lib.distances.CosineSimilarity(),
        "reducer": lib.reducers.AvgNonZeroReducer(),
    },
    lambda lib: {"distance": lib.distances.DotProductSimilarity(normalize_embeddings=False)},
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_matches_pml(pml, dtype, recipe):
    h.assert_matches_pml(NPairsLoss, dtype, recipe)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
def test_matches_pml_with_mined_tuples(pml, dtype, indices):
    h.assert_matches_pml(NPairsLoss, dtype, indices=indices)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(NPairsLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: NPairsLoss())
    h.assert_float32_agrees_with_float64(lambda: NPairsLoss(), indices=h.mined_pairs)


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: NPairsLoss())


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: NPairsLoss(), h.mined_triplets)


def test_zero_loss_without_positive_pairs():
    embeddings, labels = h.tiny_batch()
    h.assert_zero_loss_with_gradient(NPairsLoss(), embeddings, torch.arange(len(labels)))


def test_bad_input_errors():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="needs labels"):
        NPairsLoss()(embeddings, None, h.mined_pairs(labels))
    with pytest.raises(ValueError, match="ref_emb"):
        NPairsLoss()(embeddings, labels, ref_emb=embeddings[:3], ref_labels=labels[:3])
