import math

import pytest
import torch

from metric_runner.distances import DotProductSimilarity, LpDistance
from metric_runner.losses import SupConLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h


def hand_anchor_losses(sim, pos_pairs, neg_pairs, temperature, num_anchors):
    """Per anchor i: -mean over its positives p of log(e^(s_ip/t) / sum over its positives and
    negatives k of e^(s_ik/t)); 0 without positives. Repeated pairs count once."""
    pos_pairs, neg_pairs = set(pos_pairs), set(neg_pairs)
    losses = []
    for i in range(num_anchors):
        positives = [j for a, j in sorted(pos_pairs) if a == i]
        others = positives + [j for a, j in sorted(neg_pairs) if a == i]
        if not positives:
            losses.append(0.0)
            continue
        denominator = sum(math.exp(sim[i][k] / temperature) for k in others)
        log_probs = [sim[i][p] / temperature - math.log(denominator) for p in positives]
        losses.append(-sum(log_probs) / len(positives))
    return losses


def test_hand_computed_value_over_all_pairs():
    embeddings, labels = h.tiny_batch()
    sim = (embeddings @ embeddings.t()).tolist()
    pairs = h.tiny_pairs(labels.tolist())
    expected = hand_anchor_losses(
        sim, [(i, j) for i, j, s in pairs if s], [(i, j) for i, j, s in pairs if not s], 0.5, 5
    )
    # Anchor 4 has no positive: it is left out of the average of non-zero losses.
    assert expected[4] == 0
    loss_fn = SupConLoss(temperature=0.5)
    assert loss_fn(embeddings, labels).item() == pytest.approx(sum(expected) / 4, rel=1e-12)


def test_mined_pairs_restrict_the_denominator():
    embeddings, labels = h.tiny_batch()
    sim = (embeddings @ embeddings.t()).tolist()
    pos_pairs = [(0, 1), (0, 1), (2, 3), (3, 2)]
    neg_pairs = [(0, 4), (2, 0), (2, 0), (2, 1)]
    pairs = tuple(torch.tensor(x) for x in (*zip(*pos_pairs), *zip(*neg_pairs)))
    out = SupConLoss(temperature=0.2, reducer=DoNothingReducer())(embeddings, labels, pairs)["loss"]
    assert out["reduction_type"] == "element" and out["indices"].tolist() == list(range(5))
    expected = hand_anchor_losses(sim, pos_pairs, neg_pairs, 0.2, 5)
    assert out["losses"].tolist() == pytest.approx(expected, rel=1e-12)


def test_low_temperature_stays_finite():
    embeddings, _ = h.tiny_batch()
    embeddings = embeddings.clone().requires_grad_(True)
    value = SupConLoss(temperature=1e-3)(embeddings, torch.tensor([0, 1, 0, 1, 2]))
    value.backward()
    assert torch.isfinite(value) and value > 100
    assert torch.isfinite(embeddings.grad).all()


def test_a_distance_is_a_negative_similarity():
    embeddings, labels = h.tiny_batch()
    dist = torch.cdist(embeddings, embeddings)
    pairs = h.tiny_pairs(labels.tolist())
    expected = hand_anchor_losses(
        (-dist).tolist(),
        [(i, j) for i, j, s in pairs if s],
        [(i, j) for i, j, s in pairs if not s],
        0.5,
        5,
    )
    loss_fn = SupConLoss(temperature=0.5, distance=LpDistance(normalize_embeddings=False))
    assert loss_fn(embeddings, labels).item() == pytest.approx(sum(expected) / 4, rel=1e-12)


def test_zero_loss_without_negative_pairs():
    embeddings, _ = h.tiny_batch()
    h.assert_zero_loss_with_gradient(SupConLoss(), embeddings, torch.zeros(5, dtype=torch.long))


RECIPES = [
    lambda lib: {},
    lambda lib: {"reducer": lib.reducers.MeanReducer()},
    lambda lib: {
        "distance": lib.distances.DotProductSimilarity(normalize_embeddings=False),
        "reducer": lib.reducers.SumReducer(),
    },
    lambda lib: {"distance": lib.distances.LpDistance(power=2)},
    lambda lib: {"distance": lib.distances.SNRDistance()},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    h.assert_matches_pml(SupConLoss, dtype, recipe, with_ref=with_ref, temperature=0.3)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(SupConLoss, dtype, indices=indices, with_ref=with_ref, temperature=0.3)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(SupConLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: SupConLoss(temperature=0.3))
    h.assert_float32_agrees_with_float64(
        lambda: SupConLoss(distance=DotProductSimilarity()), indices=h.mined_pairs, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: SupConLoss(temperature=0.3), atol=3e-2)


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: SupConLoss(temperature=0.3), h.mined_triplets)


def test_zero_loss_without_positive_pairs():
    embeddings, _ = h.tiny_batch()
    h.assert_zero_loss_with_gradient(SupConLoss(), embeddings, torch.arange(5))
