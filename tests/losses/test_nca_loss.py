import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.losses import NCALoss
from metric_runner.reducers import DoNothingReducer
from tests.helpers import assert_close
from tests.losses import tuple_loss_helpers as h


def hand_query_losses(embeddings, labels, scale, ref=None, similarity=False, power=2):
    """{query: −log Σ_{same label} softmax(−scale · d)} over the other samples (or the reference
    set), written with log-sum-exp so that it stays exact where the softmax underflows."""
    ref_emb, ref_labels = (embeddings, labels) if ref is None else ref
    x, r = embeddings.tolist(), ref_emb.tolist()
    losses = {}
    for q in range(len(x)):
        logits, positive = [], []
        for j in range(len(r)):
            if ref is None and j == q:
                continue
            s = sum(a * b for a, b in zip(x[q], r[j]))
            logits.append(scale * s if similarity else -scale * math.dist(x[q], r[j]) ** power)
            positive.append(ref_labels[j] == labels[q])
        if not any(positive):
            continue
        top = max(logits)
        log_all = top + math.log(sum(math.exp(v - top) for v in logits))
        top_pos = max(v for v, p in zip(logits, positive) if p)
        log_pos = top_pos + math.log(
            sum(math.exp(v - top_pos) for v, p in zip(logits, positive) if p)
        )
        losses[q] = log_all - log_pos
    return losses


@pytest.mark.parametrize(("scale", "similarity"), [(1, False), (3, False), (5, True)])
def test_hand_computed_per_query_losses(scale, similarity):
    embeddings, labels = h.tiny_batch()
    expected = hand_query_losses(embeddings, labels, scale, similarity=similarity)
    distance = CosineSimilarity() if similarity else None
    loss_fn = NCALoss(softmax_scale=scale, distance=distance, reducer=DoNothingReducer())
    out = loss_fn(embeddings, labels)["loss"]
    assert out["reduction_type"] == "element"
    assert out["indices"].tolist() == sorted(expected)  # the query without positives has no term
    torch.testing.assert_close(
        out["losses"], torch.tensor([expected[q] for q in sorted(expected)], dtype=torch.float64)
    )
    got = NCALoss(softmax_scale=scale, distance=distance)(embeddings, labels)
    assert got.item() == pytest.approx(sum(expected.values()) / len(expected), rel=1e-12)


def test_reference_set_keeps_every_reference_sample():
    embeddings, labels = h.tiny_batch()
    ref_emb, ref_labels = embeddings.flip(0)[:4].roll(1, dims=1), torch.tensor([2, 1, 1, 0])
    expected = hand_query_losses(embeddings, labels, 2, ref=(ref_emb, ref_labels))
    loss_fn = NCALoss(softmax_scale=2, reducer=DoNothingReducer())
    out = loss_fn(embeddings, labels, ref_emb=ref_emb, ref_labels=ref_labels)["loss"]
    assert out["indices"].tolist() == sorted(expected)
    torch.testing.assert_close(
        out["losses"], torch.tensor([expected[q] for q in sorted(expected)], dtype=torch.float64)
    )


def test_exact_where_the_positive_softmax_underflows():
    # With this scale, exp(logit) of every positive is far below float32's smallest value.
    embeddings, _ = h.tiny_batch(torch.float32)
    labels = torch.tensor([0, 1, 0, 1, 2])  # every positive is farther than a negative
    expected = hand_query_losses(embeddings.double(), labels, 400)
    got = NCALoss(softmax_scale=400, reducer=DoNothingReducer())(embeddings, labels)["loss"][
        "losses"
    ]
    assert torch.isfinite(got).all() and got.max() > 100
    torch.testing.assert_close(got, torch.tensor([expected[q] for q in sorted(expected)]))


def test_mined_tuples_weight_each_query_by_its_count():
    embeddings, labels = h.tiny_batch()
    pairs = (torch.tensor([0, 2, 2]), torch.tensor([1, 3, 3]), torch.tensor([0]), torch.tensor([4]))
    counts = torch.bincount(torch.cat(pairs), minlength=5).double()
    weights = counts / counts.max()
    expected = hand_query_losses(embeddings, labels, 1)
    out = NCALoss(reducer=DoNothingReducer())(embeddings, labels, pairs)["loss"]
    torch.testing.assert_close(
        out["losses"], torch.tensor([expected[q] * weights[q] for q in range(4)])
    )


RECIPES = [
    lambda lib: {},
    lambda lib: {
        "distance": lib.distances.CosineSimilarity(),
        "reducer": lib.reducers.SumReducer(),
    },
    lambda lib: {
        "distance": lib.distances.LpDistance(normalize_embeddings=False),
        "reducer": lib.reducers.AvgNonZeroReducer(),
    },
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    h.assert_matches_pml(NCALoss, dtype, recipe, with_ref=with_ref, softmax_scale=3)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(NCALoss, dtype, indices=indices, with_ref=with_ref, softmax_scale=2)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(NCALoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: NCALoss(softmax_scale=4))
    h.assert_float32_agrees_with_float64(lambda: NCALoss(), indices=h.mined_pairs, with_ref=True)


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: NCALoss())


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: NCALoss(), h.mined_triplets)


def test_zero_loss_without_positives():
    embeddings, labels = h.tiny_batch()
    h.assert_zero_loss_with_gradient(
        NCALoss(distance=LpDistance()), embeddings, torch.arange(len(labels))
    )


def test_labels_are_required():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="needs labels"):
        NCALoss()(embeddings, None, h.mined_pairs(labels))


class PlainLpDistance(LpDistance):
    """Not LpDistance itself, so NCALoss uses the full squared distances, not its shortcut."""


@pytest.mark.parametrize("normalize_embeddings", [True, False])
@pytest.mark.parametrize("with_ref", [False, True])
def test_squared_euclidean_shortcut_equals_full_distances(dtype, normalize_embeddings, with_ref):
    embeddings, labels = h.data(dtype)
    # A duplicated sample: its squared distance is 0 up to rounding, where the full formula clamps.
    embeddings = torch.cat([embeddings, embeddings[:1]]).detach()
    labels = torch.cat([labels, labels[:1]])
    ref = h.ref_data(dtype) if with_ref else None

    def loss(distance_cls):
        distance = distance_cls(power=2, normalize_embeddings=normalize_embeddings)
        return NCALoss(softmax_scale=3, distance=distance)

    shortcut = h.value_and_grads(loss(LpDistance), embeddings, labels, ref=ref)
    full = h.value_and_grads(loss(PlainLpDistance), embeddings, labels, ref=ref)
    for got, want in zip(shortcut, full):
        if want is not None:
            assert_close(got, want, dtype, scale=10)


@pytest.mark.parametrize(
    "distance",
    [LpDistance(power=2), LpDistance(), CosineSimilarity()],
    ids=["squared_euclidean", "euclidean", "cosine"],
)
def test_gradients_pass_gradcheck(distance):
    embeddings, labels = h.tiny_batch()
    embeddings = embeddings.requires_grad_(True)
    labels = torch.tensor([0, 1, 0, 1, 2])  # a query without positives has no term
    loss_fn = NCALoss(softmax_scale=2, distance=distance)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, labels), (embeddings,))


def test_a_distance_that_records_statistics_still_records_them():
    embeddings, labels = h.data()
    distance = LpDistance(power=2, collect_stats=True)
    recorded = NCALoss(distance=distance)(embeddings, labels)
    assert distance.final_avg_query_norm == pytest.approx(1.0)
    assert recorded.item() == pytest.approx(NCALoss()(embeddings, labels).item(), rel=1e-9)
