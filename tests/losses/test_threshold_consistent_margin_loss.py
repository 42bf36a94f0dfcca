import math

import pytest
import torch

from metric_runner.distances import DotProductSimilarity, LpDistance
from metric_runner.losses import ThresholdConsistentMarginLoss
from tests.losses import tuple_loss_helpers as h

TINY_EMBEDDINGS = [[1.0, 0.0], [0.9, 0.5], [0.2, 1.3], [-0.6, 0.8], [-1.0, -0.4], [0.3, -1.0]]
TINY_LABELS = [0, 0, 0, 1, 1, 2]
ARGS = {"lambda_plus": 1.5, "lambda_minus": 0.7, "margin_plus": 0.8, "margin_minus": -0.2}


def tiny_batch():
    return torch.tensor(TINY_EMBEDDINGS, dtype=torch.float64), torch.tensor(TINY_LABELS)


def cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.hypot(*u) / math.hypot(*v)


def mean_of_violations(values):
    violations = [v for v in values if v > 0]
    return sum(violations) / len(violations) if violations else 0.0


def hand_tcm(pos_pairs, neg_pairs):
    x = TINY_EMBEDDINGS
    pos = [ARGS["margin_plus"] - cosine(x[i], x[j]) for i, j in pos_pairs]
    neg = [cosine(x[i], x[j]) - ARGS["margin_minus"] for i, j in neg_pairs]
    return ARGS["lambda_plus"] * mean_of_violations(pos) + ARGS[
        "lambda_minus"
    ] * mean_of_violations(neg)


def test_hand_computed_value():
    embeddings, labels = tiny_batch()
    pairs = h.tiny_pairs(labels.tolist())
    expected = hand_tcm([(i, j) for i, j, s in pairs if s], [(i, j) for i, j, s in pairs if not s])
    loss = ThresholdConsistentMarginLoss(**ARGS)(embeddings, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_hand_computed_value_with_ref_emb():
    # PML 2.9.0 compares the batch with itself even when given ref_emb (its pairs then index
    # the wrong rows), so this case is checked by hand only.
    embeddings, labels = tiny_batch()
    ref_emb = torch.tensor([[0.5, 0.5], [-0.7, 0.6], [0.1, -0.9], [1.0, 0.2]], dtype=torch.float64)
    ref_labels = [0, 1, 3, 0]
    x, r = TINY_EMBEDDINGS, ref_emb.tolist()
    pos = [
        ARGS["margin_plus"] - cosine(x[i], r[j])
        for i in range(6)
        for j in range(4)
        if TINY_LABELS[i] == ref_labels[j]
    ]
    neg = [
        cosine(x[i], r[j]) - ARGS["margin_minus"]
        for i in range(6)
        for j in range(4)
        if TINY_LABELS[i] != ref_labels[j]
    ]
    expected = ARGS["lambda_plus"] * mean_of_violations(pos) + ARGS[
        "lambda_minus"
    ] * mean_of_violations(neg)
    loss_fn = ThresholdConsistentMarginLoss(**ARGS)
    loss = loss_fn(embeddings, labels, ref_emb=ref_emb, ref_labels=torch.tensor(ref_labels))
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_repeated_mined_pairs_count_once_per_repeat():
    embeddings, labels = tiny_batch()
    a1, p, a2, n = [0, 0, 0, 3], [2, 2, 1, 4], [0, 2, 2], [5, 3, 3]
    pairs = tuple(torch.tensor(x) for x in (a1, p, a2, n))
    expected = hand_tcm(list(zip(a1, p)), list(zip(a2, n)))
    loss = ThresholdConsistentMarginLoss(**ARGS)(embeddings, labels, pairs)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"lambda_plus": 0.5, "lambda_minus": 2.0, "margin_plus": 0.6, "margin_minus": 0.1}],
)
def test_matches_pml(pml, dtype, kwargs):
    h.assert_matches_pml(ThresholdConsistentMarginLoss, dtype, **kwargs)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
def test_matches_pml_with_mined_tuples(pml, dtype, indices):
    h.assert_matches_pml(ThresholdConsistentMarginLoss, dtype, indices=indices, margin_minus=0.1)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(ThresholdConsistentMarginLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: ThresholdConsistentMarginLoss(margin_minus=0.1))


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: ThresholdConsistentMarginLoss(margin_minus=0.1))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: ThresholdConsistentMarginLoss(), h.mined_triplets)


def test_zero_loss_when_no_pair_violates_its_margin():
    embeddings, labels = tiny_batch()
    loss_fn = ThresholdConsistentMarginLoss(margin_plus=-1.0, margin_minus=1.0)
    h.assert_zero_loss_with_gradient(loss_fn, embeddings, labels)


@pytest.mark.parametrize("distance", [LpDistance(), DotProductSimilarity()])
def test_rejects_other_distances(distance):
    with pytest.raises(ValueError, match="CosineSimilarity"):
        ThresholdConsistentMarginLoss(distance=distance)
