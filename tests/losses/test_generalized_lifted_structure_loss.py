import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.losses import GeneralizedLiftedStructureLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h


def log_sum_exp(values):
    """log Σ exp, and 0 for an empty set (as the loss treats an anchor without positives)."""
    return math.log(sum(math.exp(v) for v in values)) if values else 0.0


def hand_anchor_losses(embeddings, labels, neg_margin, pos_margin, similarity=False):
    """[log Σ_p exp(d_ap − pos_margin) + log Σ_n exp(neg_margin − d_an)]_+ per anchor; with a
    similarity s the terms are pos_margin − s_ap and s_an − neg_margin."""
    x = embeddings.tolist()
    losses = []
    for a in range(len(x)):
        pos_terms, neg_terms = [], []
        for j in range(len(x)):
            if j == a:
                continue
            if similarity:
                s = sum(u * v for u, v in zip(x[a], x[j]))
                pos_term, neg_term = pos_margin - s, s - neg_margin
            else:
                d = math.dist(x[a], x[j])
                pos_term, neg_term = d - pos_margin, neg_margin - d
            if labels[j] == labels[a]:
                pos_terms.append(pos_term)
            else:
                neg_terms.append(neg_term)
        losses.append(max(log_sum_exp(pos_terms) + log_sum_exp(neg_terms), 0))
    return losses


@pytest.mark.parametrize("similarity", [False, True])
def test_hand_computed_value_and_unreduced_losses(similarity):
    embeddings, labels = h.tiny_batch()
    neg_margin, pos_margin = (0.3, 0.8) if similarity else (1.2, 0.1)
    distance = CosineSimilarity() if similarity else None
    expected = hand_anchor_losses(embeddings, labels.tolist(), neg_margin, pos_margin, similarity)
    loss_fn = GeneralizedLiftedStructureLoss(
        neg_margin=neg_margin, pos_margin=pos_margin, distance=distance
    )
    assert loss_fn(embeddings, labels).item() == pytest.approx(
        sum(expected) / len(expected), rel=1e-12
    )
    loss_fn.reducer = DoNothingReducer()
    out = loss_fn(embeddings, labels)["loss"]
    assert out["reduction_type"] == "element" and out["indices"].tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(out["losses"], torch.tensor(expected, dtype=torch.float64))


def test_hinge_clips_negative_sums_to_zero():
    # Tight classes far apart: both log-sums are negative, so every anchor's loss is 0.
    embeddings = torch.tensor(
        [[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], dtype=torch.float64
    )
    labels = torch.tensor([0, 0, 1, 1])
    loss_fn = GeneralizedLiftedStructureLoss(neg_margin=0.5, pos_margin=1.0)
    h.assert_zero_loss_with_gradient(loss_fn, embeddings, labels)


RECIPES = [
    lambda lib: {},
    lambda lib: {
        "distance": lib.distances.CosineSimilarity(),
        "reducer": lib.reducers.SumReducer(),
    },
    lambda lib: {
        "distance": lib.distances.LpDistance(power=2),
        "reducer": lib.reducers.AvgNonZeroReducer(),
    },
    lambda lib: {"distance": lib.distances.SNRDistance()},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    h.assert_matches_pml(
        GeneralizedLiftedStructureLoss,
        dtype,
        recipe,
        with_ref=with_ref,
        neg_margin=0.6,
        pos_margin=0.2,
    )


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(
        GeneralizedLiftedStructureLoss, dtype, indices=indices, with_ref=with_ref, neg_margin=0.8
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(GeneralizedLiftedStructureLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: GeneralizedLiftedStructureLoss())
    h.assert_float32_agrees_with_float64(
        lambda: GeneralizedLiftedStructureLoss(neg_margin=0.5), indices=h.mined_pairs, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: GeneralizedLiftedStructureLoss())


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: GeneralizedLiftedStructureLoss(), h.mined_triplets)


def test_bad_indices_tuple_is_rejected():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="4-tuple"):
        GeneralizedLiftedStructureLoss()(embeddings, labels, (labels, labels))
