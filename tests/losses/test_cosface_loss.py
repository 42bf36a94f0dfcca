import math

import pytest

from metric_runner.distances import LpDistance
from metric_runner.losses import CosFaceLoss
from tests.losses import weight_loss_helpers as h


def test_hand_computed_value():
    embeddings, labels, weights = h.tiny_case()
    loss_fn = CosFaceLoss(num_classes=3, embedding_size=2, margin=0.3, scale=5).double()
    h.set_weight(loss_fn, weights)

    def logit(i, j, theta):
        return 5 * (math.cos(theta) - (0.3 if j == h.LABELS[i] else 0))

    assert loss_fn(embeddings, labels).item() == pytest.approx(
        h.hand_softmax_loss(logit), rel=1e-12
    )


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(CosFaceLoss)


@pytest.mark.parametrize("kwargs", [{}, {"margin": 0.1, "scale": 8}])
def test_matches_pml(pml, dtype, kwargs):
    ours, theirs = h.build_pair(CosFaceLoss, dtype, **kwargs)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_matches_pml_with_sum_reducer(pml, dtype):
    components = lambda lib: {"reducer": lib.reducers.SumReducer()}  # noqa: E731
    ours, theirs = h.build_pair(CosFaceLoss, dtype, components=components, margin=0.2, scale=10)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_mined_tuples_match_pml(pml, dtype):
    h.assert_mined_tuples_match_pml(CosFaceLoss, dtype, scale=10)


def test_weight_regularizers_match_pml(pml, dtype):
    h.assert_weight_regularizers_match_pml(
        CosFaceLoss,
        dtype,
        [
            lambda lib: lib.regularizers.RegularFaceRegularizer(),
            lambda lib: lib.regularizers.CenterInvariantRegularizer(),
        ],
        scale=10,
    )


def test_get_logits_matches_pml(pml, dtype):
    h.assert_get_logits_matches_pml(CosFaceLoss, dtype)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(CosFaceLoss, scale=16)


def test_float16_at_scale_64_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(CosFaceLoss)
    h.assert_float32_weights_take_float16_inputs(CosFaceLoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(CosFaceLoss)


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(CosFaceLoss)


def test_bad_input_errors():
    h.assert_common_input_errors(CosFaceLoss)
    with pytest.raises(ValueError, match="CosineSimilarity"):
        CosFaceLoss(num_classes=3, embedding_size=2, distance=LpDistance())
