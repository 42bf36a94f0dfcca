import math

import pytest

from metric_runner.distances import LpDistance
from metric_runner.losses import LargeMarginSoftmaxLoss, SphereFaceLoss
from tests.losses import weight_loss_helpers as h

# PML's LargeMarginSoftmaxLoss calls scipy in a way NumPy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pytorch_metric_learning")


def psi(theta, m):
    k = math.floor(theta * m / math.pi)
    return (-1) ** k * math.cos(m * theta) - 2 * k


@pytest.mark.parametrize("margin", [2, 4])
def test_hand_computed_value(margin):
    # Class weight norms do not count (they are normalized); embedding norms do.
    embeddings, labels, weights = h.tiny_case()
    loss_fn = SphereFaceLoss(num_classes=3, embedding_size=2, margin=margin, scale=1.5).double()
    h.set_weight(loss_fn, weights)

    def logit(i, j, theta):
        cos = psi(theta, margin) if j == h.LABELS[i] else math.cos(theta)
        return 1.5 * h.EMBEDDING_NORMS[i] * cos

    assert loss_fn(embeddings, labels).item() == pytest.approx(
        h.hand_softmax_loss(logit), rel=1e-11
    )
    assert isinstance(loss_fn, LargeMarginSoftmaxLoss)


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(SphereFaceLoss)


@pytest.mark.parametrize("kwargs", [{}, {"margin": 3, "scale": 2}])
def test_matches_pml(pml, dtype, kwargs):
    ours, theirs = h.build_pair(SphereFaceLoss, dtype, **kwargs)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_mined_tuples_match_pml(pml, dtype):
    h.assert_mined_tuples_match_pml(SphereFaceLoss, dtype, margin=2)


def test_weight_regularizers_match_pml(pml, dtype):
    h.assert_weight_regularizers_match_pml(
        SphereFaceLoss, dtype, [lambda lib: lib.regularizers.RegularFaceRegularizer()]
    )


def test_get_logits_matches_pml(pml, dtype):
    h.assert_get_logits_matches_pml(SphereFaceLoss, dtype, scale=3)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(SphereFaceLoss)


def test_float16_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(SphereFaceLoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(SphereFaceLoss)


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(SphereFaceLoss)


def test_bad_input_errors():
    h.assert_common_input_errors(SphereFaceLoss)
    with pytest.raises(ValueError, match="positive integer"):
        SphereFaceLoss(num_classes=3, embedding_size=2, margin=1.5)
    with pytest.raises(ValueError, match="CosineSimilarity"):
        SphereFaceLoss(num_classes=3, embedding_size=2, distance=LpDistance())
