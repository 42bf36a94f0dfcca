import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.losses import FastAPLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h


def hand_query_losses(embeddings, labels, num_bins, power=2):
    """{query: 1 − FastAP} for every query with a positive, with the triangular kernel
    evaluated at every one of the num_bins + 1 centers."""
    x, labels = embeddings.tolist(), labels.tolist()
    width = 2**power / num_bins
    centers = [k * width for k in range(num_bins + 1)]
    losses = {}
    for q in range(len(x)):
        h_pos = [0.0] * len(centers)
        h_all = [0.0] * len(centers)
        for j in range(len(x)):
            if j == q:
                continue
            d = math.dist(x[q], x[j]) ** power
            for k, z in enumerate(centers):
                weight = max(1 - abs(d - z) / width, 0)
                h_all[k] += weight
                h_pos[k] += weight if labels[j] == labels[q] else 0
        num_pos = sum(labels[j] == labels[q] for j in range(len(x)) if j != q)
        if num_pos == 0:
            continue
        fast_ap = 0.0
        for k in range(len(centers)):
            cum_pos, cum_all = sum(h_pos[: k + 1]), sum(h_all[: k + 1])
            fast_ap += h_pos[k] * cum_pos / cum_all if cum_all > 0 else 0
        losses[q] = 1 - fast_ap / num_pos
    return losses


@pytest.mark.parametrize(("num_bins", "power"), [(10, 2), (3, 2), (4, 1)])
def test_hand_computed_per_query_losses(num_bins, power):
    embeddings, labels = h.tiny_batch()
    expected = hand_query_losses(embeddings, labels, num_bins, power)
    loss_fn = FastAPLoss(
        num_bins=num_bins, distance=LpDistance(power=power), reducer=DoNothingReducer()
    )
    out = loss_fn(embeddings, labels)["loss"]
    assert out["reduction_type"] == "element"
    assert out["indices"].tolist() == sorted(expected)  # the query without positives has no term
    torch.testing.assert_close(
        out["losses"], torch.tensor([expected[q] for q in sorted(expected)], dtype=torch.float64)
    )
    mean = sum(expected.values()) / len(expected)
    assert FastAPLoss(num_bins=num_bins, distance=LpDistance(power=power))(
        embeddings, labels
    ).item() == pytest.approx(mean, rel=1e-12)


def test_mined_tuples_weight_each_query_by_its_count():
    embeddings, labels = h.tiny_batch()
    triplets = (torch.tensor([0, 0, 2]), torch.tensor([1, 1, 3]), torch.tensor([2, 4, 0]))
    counts = torch.bincount(torch.cat(triplets), minlength=5).double()
    weights = counts / counts.max()
    expected = hand_query_losses(embeddings, labels, 10)
    out = FastAPLoss(reducer=DoNothingReducer())(embeddings, labels, triplets)["loss"]
    torch.testing.assert_close(
        out["losses"], torch.tensor([expected[q] * weights[q] for q in range(4)])
    )


RECIPES = [
    lambda lib: {},
    lambda lib: {
        "distance": lib.distances.LpDistance(power=1),
        "reducer": lib.reducers.SumReducer(),
    },
    lambda lib: {"reducer": lib.reducers.ThresholdReducer(low=0.05)},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("num_bins", [5, 20])
def test_matches_pml(pml, dtype, recipe, num_bins):
    h.assert_matches_pml(FastAPLoss, dtype, recipe, num_bins=num_bins)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
def test_matches_pml_with_mined_tuples(pml, dtype, indices):
    h.assert_matches_pml(FastAPLoss, dtype, indices=indices, num_bins=8)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(FastAPLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: FastAPLoss())
    h.assert_float32_agrees_with_float64(lambda: FastAPLoss(num_bins=7), indices=h.mined_pairs)


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: FastAPLoss())


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: FastAPLoss(), h.mined_triplets)


def test_zero_loss_without_positives():
    embeddings, labels = h.tiny_batch()
    h.assert_zero_loss_with_gradient(FastAPLoss(), embeddings, torch.arange(len(labels)))


@pytest.mark.parametrize(
    "distance", [CosineSimilarity(), LpDistance(p=1), LpDistance(normalize_embeddings=False)]
)
def test_other_distances_are_rejected(distance):
    with pytest.raises(
        ValueError, match=r"FastAPLoss needs LpDistance\(p=2, normalize_embeddings=True\)"
    ):
        FastAPLoss(distance=distance)


def test_bad_input_errors():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="num_bins"):
        FastAPLoss(num_bins=0)
    with pytest.raises(ValueError, match="needs labels"):
        FastAPLoss()(embeddings, None, h.mined_pairs(labels))
    with pytest.raises(ValueError, match="ref_emb"):
        FastAPLoss()(embeddings, labels, ref_emb=embeddings[:3], ref_labels=labels[:3])
