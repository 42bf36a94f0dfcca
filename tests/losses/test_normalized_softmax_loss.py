import math

import pytest
import torch
import torch.nn.functional as F

from metric_runner.distances import DotProductSimilarity
from metric_runner.losses import NormalizedSoftmaxLoss
from tests.helpers import assert_close
from tests.losses import weight_loss_helpers as h


def test_hand_computed_value():
    embeddings, labels, weights = h.tiny_case()
    loss_fn = NormalizedSoftmaxLoss(num_classes=3, embedding_size=2, temperature=0.4).double()
    h.set_weight(loss_fn, weights)

    def logit(i, j, theta):
        return math.cos(theta) / 0.4

    assert loss_fn(embeddings, labels).item() == pytest.approx(
        h.hand_softmax_loss(logit), rel=1e-12
    )


@pytest.mark.parametrize(
    "distance_name, distance_kwargs, logit",
    [
        # A distance enters negated: the logit is -||x̂ - ŵ|| / T.
        ("LpDistance", {}, lambda i, theta: -math.sqrt(2 - 2 * math.cos(theta))),
        # Unnormalized embeddings keep their norm; the class weights are unit vectors anyway.
        (
            "DotProductSimilarity",
            {"normalize_embeddings": False},
            lambda i, theta: h.EMBEDDING_NORMS[i] * math.cos(theta),
        ),
    ],
)
def test_hand_computed_value_with_other_distances(distance_name, distance_kwargs, logit):
    embeddings, labels, weights = h.tiny_case()
    distance = getattr(h.with_submodules("metric_runner").distances, distance_name)(
        **distance_kwargs
    )
    loss_fn = NormalizedSoftmaxLoss(
        num_classes=3, embedding_size=2, temperature=0.5, distance=distance
    )
    h.set_weight(loss_fn.double(), weights)
    expected = h.hand_softmax_loss(lambda i, j, theta: logit(i, theta) / 0.5)
    assert loss_fn(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(NormalizedSoftmaxLoss)


@pytest.mark.parametrize(
    "components",
    [
        lambda lib: {},
        lambda lib: {"distance": lib.distances.CosineSimilarity()},
        lambda lib: {"distance": lib.distances.LpDistance()},
        lambda lib: {"distance": lib.distances.DotProductSimilarity(normalize_embeddings=False)},
        lambda lib: {"reducer": lib.reducers.SumReducer()},
    ],
)
def test_matches_pml(pml, dtype, components):
    ours, theirs = h.build_pair(
        NormalizedSoftmaxLoss, dtype, components=components, temperature=0.3
    )
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_default_temperature_matches_pml(pml, dtype):
    ours, theirs = h.build_pair(NormalizedSoftmaxLoss, dtype)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_mined_tuples_match_pml(pml, dtype):
    h.assert_mined_tuples_match_pml(NormalizedSoftmaxLoss, dtype, temperature=0.2)


def test_weight_regularizers_match_pml(pml, dtype):
    h.assert_weight_regularizers_match_pml(
        NormalizedSoftmaxLoss,
        dtype,
        [
            lambda lib: lib.regularizers.RegularFaceRegularizer(),
            lambda lib: lib.regularizers.CenterInvariantRegularizer(),
        ],
        temperature=0.2,
    )


@pytest.mark.parametrize(
    "components", [lambda lib: {}, lambda lib: {"distance": lib.distances.LpDistance()}]
)
def test_get_logits_matches_pml(pml, dtype, components):
    h.assert_get_logits_matches_pml(NormalizedSoftmaxLoss, dtype, components=components)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(NormalizedSoftmaxLoss, temperature=0.1)


def test_float16_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(NormalizedSoftmaxLoss)
    h.assert_float32_weights_take_float16_inputs(NormalizedSoftmaxLoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(NormalizedSoftmaxLoss)


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(NormalizedSoftmaxLoss)


def test_bad_input_errors():
    h.assert_common_input_errors(NormalizedSoftmaxLoss)


@pytest.mark.parametrize("normalize_embeddings", [True, False])
def test_fused_loss_equals_cross_entropy_of_get_logits(dtype, normalize_embeddings):
    distance = DotProductSimilarity(normalize_embeddings=normalize_embeddings)
    loss_fn = NormalizedSoftmaxLoss(**h.sizes(NormalizedSoftmaxLoss), distance=distance)
    loss_fn = loss_fn.to(dtype)
    embeddings, labels = h.data(dtype)
    fused = h.value_and_grads(loss_fn, embeddings, labels)
    emb = embeddings.detach().clone().requires_grad_(True)
    expected = F.cross_entropy(loss_fn.get_logits(emb), labels)
    expected_grads = torch.autograd.grad(expected, [emb, loss_fn.W])
    for got, want in zip(fused, (expected, *expected_grads)):
        assert_close(got, want, dtype)


def test_a_distance_that_records_statistics_still_records_them():
    embeddings, labels = h.data(torch.float64)
    distance = DotProductSimilarity(collect_stats=True)
    loss_fn = NormalizedSoftmaxLoss(**h.sizes(NormalizedSoftmaxLoss), distance=distance)
    plain = NormalizedSoftmaxLoss(**h.sizes(NormalizedSoftmaxLoss)).double()
    h.set_weight(plain, loss_fn.W)
    recorded = loss_fn.double()(embeddings, labels)
    assert distance.final_avg_query_norm == pytest.approx(1.0)
    assert recorded.item() == pytest.approx(plain(embeddings, labels).item(), rel=1e-12)
