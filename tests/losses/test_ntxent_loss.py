import math

import pytest
import torch

from metric_runner.distances import LpDistance
from metric_runner.losses import NTXentLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h


def hand_pair_losses(embeddings, pos_pairs, neg_pairs, temperature, similarity):
    """-log(e^(s_ap/t) / (e^(s_ap/t) + sum over the listed negative pairs (a, n) of e^(s_an/t)))
    per positive pair, repeated negative pairs counted each time."""
    losses = []
    for a, p in pos_pairs:
        pos = math.exp(similarity(embeddings[a], embeddings[p]) / temperature)
        neg = sum(
            math.exp(similarity(embeddings[a], embeddings[n]) / temperature)
            for a2, n in neg_pairs
            if a2 == a
        )
        losses.append(-math.log(pos / (pos + neg)))
    return losses


def cosine(x, y):
    return float(x @ y)


def test_hand_computed_value_over_all_pairs():
    embeddings, labels = h.tiny_batch()
    pairs = h.tiny_pairs(labels.tolist())
    pos_pairs = [(i, j) for i, j, same in pairs if same]
    neg_pairs = [(i, j) for i, j, same in pairs if not same]
    expected = hand_pair_losses(embeddings, pos_pairs, neg_pairs, 0.5, cosine)
    loss_fn = NTXentLoss(temperature=0.5)
    assert loss_fn(embeddings, labels).item() == pytest.approx(
        sum(expected) / len(expected), rel=1e-12
    )


def test_a_distance_is_used_as_its_negative():
    embeddings, labels = h.tiny_batch()
    pairs = h.tiny_pairs(labels.tolist())
    pos_pairs = [(i, j) for i, j, same in pairs if same]
    neg_pairs = [(i, j) for i, j, same in pairs if not same]
    neg_dist = lambda x, y: -math.dist(x.tolist(), y.tolist())  # noqa: E731
    expected = hand_pair_losses(embeddings, pos_pairs, neg_pairs, 0.2, neg_dist)
    loss_fn = NTXentLoss(temperature=0.2, distance=LpDistance(), reducer=DoNothingReducer())
    out = loss_fn(embeddings, labels)["loss"]
    assert out["reduction_type"] == "pos_pair"
    assert list(zip(*[x.tolist() for x in out["indices"]])) == pos_pairs
    assert out["losses"].tolist() == pytest.approx(expected, rel=1e-12)


def test_mined_pairs_count_repeated_negatives_and_lone_positives_give_zero():
    embeddings, labels = h.tiny_batch()
    pos_pairs = [(0, 1), (0, 1), (2, 3)]  # anchor 2 has no negative pair
    neg_pairs = [(0, 2), (0, 2), (0, 4), (1, 3)]
    pairs = tuple(torch.tensor(x) for x in (*zip(*pos_pairs), *zip(*neg_pairs)))
    out = NTXentLoss(temperature=0.3, reducer=DoNothingReducer())(embeddings, labels, pairs)
    expected = hand_pair_losses(embeddings, pos_pairs, neg_pairs, 0.3, cosine)
    assert expected[2] == 0
    assert out["loss"]["losses"].tolist() == pytest.approx(expected, rel=1e-12)


def test_low_temperature_stays_finite():
    # Each anchor's positive is farther than a negative: losses near (s_an - s_ap) / t ~ 10^3.
    embeddings, _ = h.tiny_batch()
    embeddings = embeddings.clone().requires_grad_(True)
    value = NTXentLoss(temperature=1e-3)(embeddings, torch.tensor([0, 1, 0, 1, 2]))
    value.backward()
    assert torch.isfinite(value) and value > 100
    assert torch.isfinite(embeddings.grad).all()


RECIPES = [
    lambda lib: {},
    lambda lib: {"distance": lib.distances.LpDistance(), "reducer": lib.reducers.SumReducer()},
    lambda lib: {"distance": lib.distances.DotProductSimilarity(normalize_embeddings=False)},
    lambda lib: {"reducer": lib.reducers.PerAnchorReducer()},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    h.assert_matches_pml(NTXentLoss, dtype, recipe, with_ref=with_ref, temperature=0.3)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(NTXentLoss, dtype, indices=indices, with_ref=with_ref, temperature=0.3)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(NTXentLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: NTXentLoss(temperature=0.3))
    h.assert_float32_agrees_with_float64(
        lambda: NTXentLoss(temperature=0.3), indices=h.mined_triplets, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: NTXentLoss(temperature=0.3), atol=3e-2)


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: NTXentLoss(temperature=0.3))
    h.assert_labels_on_cpu_are_moved(lambda: NTXentLoss(temperature=0.3), h.mined_pairs)


def test_zero_loss_without_positive_or_negative_pairs():
    embeddings, labels = h.tiny_batch()
    h.assert_zero_loss_with_gradient(NTXentLoss(), embeddings, torch.arange(5))
    h.assert_zero_loss_with_gradient(NTXentLoss(), embeddings, torch.zeros(5))
    only_positives = (
        torch.tensor([0]),
        torch.tensor([1]),
        torch.tensor([], dtype=torch.long),
        torch.tensor([], dtype=torch.long),
    )
    h.assert_zero_loss_with_gradient(NTXentLoss(), embeddings, labels, only_positives)
