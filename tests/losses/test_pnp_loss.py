import math

import pytest
import torch

from metric_runner.distances import DotProductSimilarity, LpDistance
from metric_runner.losses import PNPLoss
from tests.losses import tuple_loss_helpers as h

TINY_EMBEDDINGS = [[1.0, 0.0], [0.9, 0.5], [0.2, 1.3], [-0.6, 0.8], [-1.0, -0.4], [0.3, -1.0]]
# Class 2 has a single member: that query has no other positive and is left out.
TINY_LABELS = [0, 0, 0, 1, 1, 2]
B, ALPHA, ANNEAL = 3, 2, 0.2

RANK_PENALTIES = {
    "O": lambda r: r,
    "Iu": lambda r: (1 + r) * math.log(1 + r),
    "Ib": lambda r: (B * r - math.log(1 + B * r)) / B**2,
    "Ds": lambda r: math.log(1 + r),
    "Dq": lambda r: 1 / (1 + r) ** ALPHA,
}


def tiny_batch():
    return torch.tensor(TINY_EMBEDDINGS, dtype=torch.float64), torch.tensor(TINY_LABELS)


def cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.hypot(*u) / math.hypot(*v)


def hand_pnp(variant):
    """Per query with another positive: mean over its positives i (itself included) of
    F(Σ_negatives j sigmoid((s_qj − s_qi) / anneal)); then the mean over those queries."""
    x, y = TINY_EMBEDDINGS, TINY_LABELS
    per_query = []
    for q in range(len(x)):
        positives = [i for i in range(len(x)) if y[i] == y[q]]
        if len(positives) < 2:
            continue
        values = []
        for i in positives:
            ranks = sum(
                1 / (1 + math.exp(-(cosine(x[q], x[j]) - cosine(x[q], x[i])) / ANNEAL))
                for j in range(len(x))
                if y[j] != y[q]
            )
            values.append(RANK_PENALTIES[variant](ranks))
        per_query.append(sum(values) / len(values))
    mean = sum(per_query) / len(per_query)
    return 1 - mean if variant == "Dq" else mean


@pytest.mark.parametrize("variant", list(RANK_PENALTIES))
def test_hand_computed_value(variant):
    embeddings, labels = tiny_batch()
    loss_fn = PNPLoss(b=B, alpha=ALPHA, anneal=ANNEAL, variant=variant)
    assert loss_fn(embeddings, labels).item() == pytest.approx(hand_pnp(variant), rel=1e-12)


@pytest.mark.parametrize("variant", list(RANK_PENALTIES))
def test_matches_pml(pml, dtype, variant):
    h.assert_matches_pml(PNPLoss, dtype, b=3, alpha=2, anneal=0.05, variant=variant)


def test_matches_pml_at_default_anneal(pml, dtype):
    h.assert_matches_pml(PNPLoss, dtype, variant="Ds")


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(PNPLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: PNPLoss(anneal=0.05, variant="Iu"))


def test_float16_close_to_float32_with_finite_gradients():
    h.assert_float16_close_to_float32(lambda: PNPLoss(anneal=0.05, variant="Ib"))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: PNPLoss(anneal=0.05))


def test_zero_loss_when_no_query_has_another_positive():
    embeddings, _ = tiny_batch()
    h.assert_zero_loss_with_gradient(PNPLoss(), embeddings, torch.arange(6))


def test_rejects_unknown_variant():
    with pytest.raises(ValueError, match=r"\['Ds', 'Dq', 'Iu', 'Ib', 'O'\]"):
        PNPLoss(variant="X")


@pytest.mark.parametrize("distance", [LpDistance(), DotProductSimilarity()])
def test_rejects_other_distances(distance):
    with pytest.raises(ValueError, match="CosineSimilarity"):
        PNPLoss(distance=distance)


def test_rejects_inputs_it_cannot_use():
    embeddings, labels = tiny_batch()
    with pytest.raises(ValueError, match="needs labels"):
        PNPLoss()(embeddings)
    with pytest.raises(ValueError, match="indices_tuple"):
        PNPLoss()(embeddings, labels, h.mined_triplets(labels))
    with pytest.raises(ValueError, match="ref_emb"):
        PNPLoss()(embeddings, labels, ref_emb=embeddings.clone(), ref_labels=labels)
