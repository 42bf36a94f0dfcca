import math

import pytest
import torch

from metric_runner.distances import DotProductSimilarity, LpDistance
from metric_runner.losses import ArcFaceLoss
from tests.helpers import assert_close
from tests.losses import weight_loss_helpers as h


def hand_computed_arcface(margin_degrees, scale):
    m = math.radians(margin_degrees)

    def logit(i, j, theta):
        if j != h.LABELS[i]:
            return scale * math.cos(theta)
        if theta + m <= math.pi:
            return scale * math.cos(theta + m)
        return scale * (math.cos(theta) - m * math.sin(m))

    return h.hand_softmax_loss(logit)


def test_hand_computed_value():
    embeddings, labels, weights = h.tiny_case()
    loss_fn = ArcFaceLoss(num_classes=3, embedding_size=2, margin=30, scale=4).double()
    h.set_weight(loss_fn, weights)
    expected = hand_computed_arcface(30, 4)
    assert loss_fn(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)


def test_hand_computed_logits_and_margin_in_radians():
    embeddings, _, weights = h.tiny_case()
    loss_fn = ArcFaceLoss(num_classes=3, embedding_size=2, scale=4).double()
    h.set_weight(loss_fn, weights)
    expected = [
        [4 * math.cos(h.angle_between(a, c)) for c in h.CLASS_ANGLES] for a in h.EMBEDDING_ANGLES
    ]
    assert_close(
        loss_fn.get_logits(embeddings), torch.tensor(expected, dtype=torch.float64), torch.float64
    )
    assert loss_fn.margin == pytest.approx(math.radians(28.6))


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(ArcFaceLoss)


@pytest.mark.parametrize("kwargs", [{}, {"margin": 40, "scale": 20}, {"margin": 10, "scale": 1.5}])
def test_matches_pml(pml, dtype, kwargs):
    ours, theirs = h.build_pair(ArcFaceLoss, dtype, **kwargs)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


@pytest.mark.parametrize(
    "components",
    [
        lambda lib: {"reducer": lib.reducers.SumReducer()},
        lambda lib: {"reducer": lib.reducers.ThresholdReducer(low=5.0)},
    ],
)
def test_matches_pml_with_other_reducers(pml, dtype, components):
    ours, theirs = h.build_pair(ArcFaceLoss, dtype, components=components, margin=20, scale=16)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_mined_tuples_match_pml(pml, dtype):
    h.assert_mined_tuples_match_pml(ArcFaceLoss, dtype, margin=20, scale=16)


def test_weight_regularizers_match_pml(pml, dtype):
    h.assert_weight_regularizers_match_pml(
        ArcFaceLoss,
        dtype,
        [
            lambda lib: lib.regularizers.RegularFaceRegularizer(),
            lambda lib: lib.regularizers.CenterInvariantRegularizer(),
        ],
        scale=16,
    )


def test_get_logits_matches_pml(pml, dtype):
    h.assert_get_logits_matches_pml(ArcFaceLoss, dtype, scale=10)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(ArcFaceLoss, scale=16)


def test_float16_at_scale_64_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(ArcFaceLoss)
    h.assert_float32_weights_take_float16_inputs(ArcFaceLoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(ArcFaceLoss)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_gradient_is_finite_where_cosine_is_one_or_minus_one(dtype):
    # arccos has an infinite derivative at ±1; the loss must not turn that into NaN.
    loss_fn = ArcFaceLoss(num_classes=3, embedding_size=2).to(dtype)
    h.set_weight(loss_fn, torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=dtype))
    embeddings = torch.tensor(
        [[2.0, 0.0], [-3.0, 0.0], [0.0, 1.0]], dtype=dtype, requires_grad=True
    )
    loss = loss_fn(embeddings, torch.tensor([0, 2, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()
    assert torch.isfinite(loss_fn.W.grad).all()


def test_empty_batch_gives_zero_loss_with_gradient():
    loss_fn = ArcFaceLoss(num_classes=3, embedding_size=2)
    embeddings = torch.zeros(0, 2, requires_grad=True)
    loss = loss_fn(embeddings, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(ArcFaceLoss)


def test_bad_input_errors():
    h.assert_common_input_errors(ArcFaceLoss)
    for distance in (LpDistance(), DotProductSimilarity()):
        with pytest.raises(ValueError, match="CosineSimilarity"):
            ArcFaceLoss(num_classes=3, embedding_size=2, distance=distance)


def reference_cosine_with_margin(cosine, margin):
    """cos(θ + m) as plain autograd steps, floored sin²θ and the linear part past π."""
    sin_theta = torch.sqrt(torch.clamp(1 - cosine * cosine, min=torch.finfo(cosine.dtype).eps))
    with_margin = cosine * math.cos(margin) - sin_theta * math.sin(margin)
    past_pi = cosine <= math.cos(math.pi - margin)
    return torch.where(past_pi, cosine - margin * math.sin(margin), with_margin)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_target_cosine_value_and_gradient_match_autograd(dtype):
    """Across θ + m < π, past π, and c = ±1 where sin²θ sits at its floor."""
    loss_fn = ArcFaceLoss(num_classes=3, embedding_size=2, margin=30)
    cosine = torch.tensor([1.0, 0.9, 0.3, -0.5, -0.8, -0.95, -1.0], dtype=dtype)
    cosine.requires_grad_(True)
    ours = loss_fn.modify_cosine_of_target_classes(cosine)
    expected = reference_cosine_with_margin(cosine, loss_fn.margin)
    assert torch.equal(ours, expected)
    grad = torch.linspace(0.5, 2.0, len(cosine), dtype=dtype)
    (our_grad,) = torch.autograd.grad(ours, cosine, grad)
    (expected_grad,) = torch.autograd.grad(expected, cosine, grad)
    assert_close(our_grad, expected_grad, dtype)
    inside = torch.tensor([0.9, 0.3, -0.5, -0.95], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss_fn.modify_cosine_of_target_classes, (inside,))
