import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from metric_runner.losses import InstanceLoss
from metric_runner.reducers import DoNothingReducer
from tests.helpers import assert_close
from tests.losses import tuple_loss_helpers as h

TINY_EMBEDDINGS = [[1.0, 0.0], [0.9, 0.5], [0.2, 1.3], [-0.6, 0.8], [-1.0, -0.4]]
# Unsorted, non-consecutive labels: the targets are their ranks, 7 -> 1, 3 -> 0, 9 -> 2.
TINY_LABELS = [7, 7, 3, 3, 9]


def tiny_batch():
    return torch.tensor(TINY_EMBEDDINGS, dtype=torch.float64), torch.tensor(TINY_LABELS)


def cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.hypot(*u) / math.hypot(*v)


def hand_instance_losses(gamma):
    ranks = {label: rank for rank, label in enumerate(sorted(set(TINY_LABELS)))}
    losses = []
    for i, label in enumerate(TINY_LABELS):
        logits = [gamma * cosine(TINY_EMBEDDINGS[i], other) for other in TINY_EMBEDDINGS]
        log_norm = math.log(sum(math.exp(z) for z in logits))
        losses.append(log_norm - logits[ranks[label]])
    return losses


def test_hand_computed_losses():
    embeddings, labels = tiny_batch()
    out = InstanceLoss(gamma=3, reducer=DoNothingReducer())(embeddings, labels)
    torch.testing.assert_close(
        out["loss"]["losses"], torch.tensor(hand_instance_losses(3), dtype=torch.float64)
    )
    assert out["loss"]["indices"].tolist() == list(range(5))
    assert out["loss"]["reduction_type"] == "element"


def test_hand_computed_mean():
    embeddings, labels = tiny_batch()
    expected = sum(hand_instance_losses(3)) / 5
    assert InstanceLoss(gamma=3)(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)


RECIPES = [
    lambda lib: {},
    lambda lib: {"reducer": lib.reducers.SumReducer()},
    lambda lib: {"reducer": lib.reducers.ThresholdReducer(low=1.0)},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("gamma", [64, 5])
def test_matches_pml(pml, dtype, recipe, gamma):
    h.assert_matches_pml(InstanceLoss, dtype, recipe, gamma=gamma)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(InstanceLoss)


class PlainCosineSimilarity(CosineSimilarity):
    """Not CosineSimilarity itself, so InstanceLoss takes its general path: logits from the
    distance matrix and F.cross_entropy."""


@pytest.mark.parametrize("gamma", [64, 2])
def test_fused_path_equals_general_path(dtype, gamma):
    embeddings, labels = h.data(dtype)
    fused = h.value_and_grads(InstanceLoss(gamma=gamma), embeddings, labels)
    general = h.value_and_grads(
        InstanceLoss(gamma=gamma, distance=PlainCosineSimilarity()), embeddings, labels
    )
    for got, want in zip(fused[:2], general[:2]):
        assert_close(got, want, dtype)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: InstanceLoss(gamma=16))


def test_float16_at_gamma_64_close_to_float32():
    h.assert_float16_close_to_float32(lambda: InstanceLoss(), atol=5e-2)


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: InstanceLoss())


@pytest.mark.parametrize("distance", [LpDistance(), DotProductSimilarity()])
def test_rejects_other_distances(distance):
    with pytest.raises(ValueError, match="CosineSimilarity"):
        InstanceLoss(distance=distance)


def test_rejects_inputs_it_cannot_use():
    embeddings, labels = tiny_batch()
    loss_fn = InstanceLoss()
    with pytest.raises(ValueError, match="needs labels"):
        loss_fn(embeddings)
    with pytest.raises(ValueError, match="indices_tuple"):
        loss_fn(embeddings, labels, h.mined_triplets(labels))
    with pytest.raises(ValueError, match="ref_emb"):
        loss_fn(embeddings, labels, ref_emb=embeddings.clone(), ref_labels=labels)


def test_a_distance_that_records_statistics_still_records_them():
    embeddings, labels = h.data()
    distance = CosineSimilarity(collect_stats=True)
    recorded = InstanceLoss(gamma=8, distance=distance)(embeddings, labels)
    assert distance.final_avg_query_norm == pytest.approx(1.0)
    assert recorded.item() == pytest.approx(InstanceLoss(gamma=8)(embeddings, labels).item())
