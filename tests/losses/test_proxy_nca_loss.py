import math

import pytest
import torch

from metric_runner.losses import ProxyNCALoss
from tests.losses import weight_loss_helpers as h


def tiny_proxy_case():
    embeddings, labels, weights = h.tiny_case()
    return embeddings, labels, weights.t()  # proxies are rows


def test_hand_computed_value():
    # Default distance: squared Euclidean distance of unit vectors, 2 - 2·cos θ.
    embeddings, labels, proxies = tiny_proxy_case()
    loss_fn = ProxyNCALoss(num_classes=3, embedding_size=2, softmax_scale=1.5).double()
    h.set_weight(loss_fn, proxies)

    def logit(i, j, theta):
        return -1.5 * (2 - 2 * math.cos(theta))

    assert loss_fn(embeddings, labels).item() == pytest.approx(
        h.hand_softmax_loss(logit), rel=1e-12
    )


def test_hand_computed_value_with_a_similarity():
    embeddings, labels, proxies = tiny_proxy_case()
    lib = h.with_submodules("metric_runner")
    loss_fn = ProxyNCALoss(
        num_classes=3, embedding_size=2, softmax_scale=2, distance=lib.distances.CosineSimilarity()
    ).double()
    h.set_weight(loss_fn, proxies)

    def logit(i, j, theta):
        return 2 * math.cos(theta)

    assert loss_fn(embeddings, labels).item() == pytest.approx(
        h.hand_softmax_loss(logit), rel=1e-12
    )


def test_hand_computed_miner_weights():
    # A mined tuple weighs each sample by how often it is an anchor, relative to the most used.
    embeddings, labels, proxies = tiny_proxy_case()
    lib = h.with_submodules("metric_runner")
    loss_fn = ProxyNCALoss(
        num_classes=3, embedding_size=2, reducer=lib.reducers.DoNothingReducer()
    ).double()
    h.set_weight(loss_fn, proxies)
    per_sample = loss_fn(embeddings, labels)["loss"]["losses"]
    triplets = (torch.tensor([0, 0, 3]), torch.tensor([3, 3, 0]), torch.tensor([1, 2, 1]))
    weighted = loss_fn(embeddings, labels, triplets)["loss"]["losses"]
    torch.testing.assert_close(
        weighted, per_sample * torch.tensor([1.0, 0, 0, 0.5], dtype=torch.float64)
    )


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(ProxyNCALoss)


@pytest.mark.parametrize(
    "components",
    [
        lambda lib: {},
        lambda lib: {"distance": lib.distances.LpDistance()},
        lambda lib: {"distance": lib.distances.LpDistance(normalize_embeddings=False, power=2)},
        lambda lib: {"distance": lib.distances.CosineSimilarity()},
        lambda lib: {"reducer": lib.reducers.SumReducer()},
    ],
)
def test_matches_pml(pml, dtype, components):
    ours, theirs = h.build_pair(ProxyNCALoss, dtype, components=components, softmax_scale=3)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_mined_tuples_match_pml(pml, dtype):
    h.assert_mined_tuples_match_pml(ProxyNCALoss, dtype, softmax_scale=2)


def test_weight_regularizers_match_pml(pml, dtype):
    h.assert_weight_regularizers_match_pml(
        ProxyNCALoss,
        dtype,
        [
            lambda lib: lib.regularizers.RegularFaceRegularizer(),
            lambda lib: lib.regularizers.CenterInvariantRegularizer(),
        ],
    )


def test_get_logits_matches_pml(pml, dtype):
    h.assert_get_logits_matches_pml(ProxyNCALoss, dtype)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(ProxyNCALoss, softmax_scale=4)


def test_float16_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(ProxyNCALoss)
    h.assert_float32_weights_take_float16_inputs(ProxyNCALoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(ProxyNCALoss)


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(ProxyNCALoss)


def test_bad_input_errors():
    h.assert_common_input_errors(ProxyNCALoss)
