import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.losses import LargeMarginSoftmaxLoss
from tests.losses import weight_loss_helpers as h

# PML's LargeMarginSoftmaxLoss calls scipy in a way NumPy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pytorch_metric_learning")


def psi(theta, m):
    """L-Softmax's target function, written with arccos' angle directly."""
    k = math.floor(theta * m / math.pi)
    return (-1) ** k * math.cos(m * theta) - 2 * k


@pytest.mark.parametrize("margin", [1, 2, 3, 4])
def test_hand_computed_value(margin):
    embeddings, labels, weights = h.tiny_case()
    loss_fn = LargeMarginSoftmaxLoss(
        num_classes=3, embedding_size=2, margin=margin, scale=0.7
    ).double()
    h.set_weight(loss_fn, weights)

    def logit(i, j, theta):
        norms = 0.7 * h.EMBEDDING_NORMS[i] * h.CLASS_NORMS[j]
        return norms * (psi(theta, margin) if j == h.LABELS[i] else math.cos(theta))

    assert loss_fn(embeddings, labels).item() == pytest.approx(
        h.hand_softmax_loss(logit), rel=1e-11
    )


def test_margin_one_is_plain_softmax_over_dot_products():
    embeddings, labels, weights = h.tiny_case()
    loss_fn = LargeMarginSoftmaxLoss(num_classes=3, embedding_size=2, margin=1).double()
    h.set_weight(loss_fn, weights)
    expected = torch.nn.functional.cross_entropy(embeddings @ weights, labels)
    assert loss_fn(embeddings, labels).item() == pytest.approx(expected.item(), rel=1e-12)


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(LargeMarginSoftmaxLoss)


@pytest.mark.parametrize("kwargs", [{}, {"margin": 2, "scale": 0.5}, {"margin": 3, "scale": 2}])
def test_matches_pml(pml, dtype, kwargs):
    ours, theirs = h.build_pair(LargeMarginSoftmaxLoss, dtype, **kwargs)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_mined_tuples_match_pml(pml, dtype):
    h.assert_mined_tuples_match_pml(LargeMarginSoftmaxLoss, dtype, margin=3)


def test_weight_regularizers_match_pml(pml, dtype):
    h.assert_weight_regularizers_match_pml(
        LargeMarginSoftmaxLoss,
        dtype,
        [
            lambda lib: lib.regularizers.RegularFaceRegularizer(),
            lambda lib: lib.regularizers.CenterInvariantRegularizer(),
        ],
    )


def test_get_logits_matches_pml(pml, dtype):
    h.assert_get_logits_matches_pml(LargeMarginSoftmaxLoss, dtype, scale=2)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(LargeMarginSoftmaxLoss, margin=3)


def test_float16_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(LargeMarginSoftmaxLoss)
    h.assert_float32_weights_take_float16_inputs(LargeMarginSoftmaxLoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(LargeMarginSoftmaxLoss, margin=3)


def test_zero_embedding_gives_finite_loss_and_gradient():
    loss_fn = LargeMarginSoftmaxLoss(num_classes=3, embedding_size=2)
    embeddings = torch.tensor([[0.0, 0.0], [1.0, 2.0]], requires_grad=True)
    loss = loss_fn(embeddings, torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(LargeMarginSoftmaxLoss)


def test_bad_input_errors():
    h.assert_common_input_errors(LargeMarginSoftmaxLoss)
    for margin in (0, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            LargeMarginSoftmaxLoss(num_classes=3, embedding_size=2, margin=margin)
    with pytest.raises(ValueError, match="CosineSimilarity"):
        LargeMarginSoftmaxLoss(num_classes=3, embedding_size=2, distance=LpDistance())
    with pytest.raises(ValueError, match="power=1"):
        LargeMarginSoftmaxLoss(num_classes=3, embedding_size=2, distance=CosineSimilarity(power=2))
