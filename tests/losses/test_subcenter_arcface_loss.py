import math

import pytest
import torch

from metric_runner.distances import LpDistance
from metric_runner.losses import ArcFaceLoss, SubCenterArcFaceLoss
from metric_runner.losses.subcenter_arcface_loss import (
    _MaxOverSubCenterCosines,
    _ScaledUnitColumnsBySubCenter,
)
from tests.helpers import TEST_DEVICE, assert_close
from tests.losses import weight_loss_helpers as h

SUB_CENTER_OFFSETS = [0, 50]  # degrees: each class's sub-centers in the tiny case


def sub_center_weights():
    columns = [
        h.at_angle(angle + offset, norm)
        for angle, norm in zip(h.CLASS_ANGLES, h.CLASS_NORMS)
        for offset in SUB_CENTER_OFFSETS
    ]
    return torch.tensor(columns, dtype=torch.float64).t()


def test_hand_computed_value():
    embeddings, labels, _ = h.tiny_case()
    loss_fn = SubCenterArcFaceLoss(
        num_classes=3, embedding_size=2, margin=30, scale=4, sub_centers=2
    )
    loss_fn = loss_fn.double()
    h.set_weight(loss_fn, sub_center_weights())
    m = math.radians(30)

    def logit(i, j, _):
        angle = h.EMBEDDING_ANGLES[i]
        theta = min(
            h.angle_between(angle, h.CLASS_ANGLES[j] + offset) for offset in SUB_CENTER_OFFSETS
        )
        if j != h.LABELS[i]:
            return 4 * math.cos(theta)
        if theta + m <= math.pi:
            return 4 * math.cos(theta + m)
        return 4 * (math.cos(theta) - m * math.sin(m))

    assert loss_fn(embeddings, labels).item() == pytest.approx(
        h.hand_softmax_loss(logit), rel=1e-12
    )
    assert isinstance(loss_fn, ArcFaceLoss)


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(SubCenterArcFaceLoss)


@pytest.mark.parametrize("kwargs", [{}, {"margin": 20, "scale": 10, "sub_centers": 2}])
def test_matches_pml(pml, dtype, kwargs):
    ours, theirs = h.build_pair(SubCenterArcFaceLoss, dtype, **kwargs)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_mined_tuples_match_pml(pml, dtype):
    h.assert_mined_tuples_match_pml(SubCenterArcFaceLoss, dtype, scale=10)


def test_weight_regularizers_match_pml(pml, dtype):
    h.assert_weight_regularizers_match_pml(
        SubCenterArcFaceLoss,
        dtype,
        [
            lambda lib: lib.regularizers.RegularFaceRegularizer(),
            lambda lib: lib.regularizers.SparseCentersRegularizer(
                num_classes=h.NUM_CLASSES, centers_per_class=2
            ),
        ],
        sub_centers=2,
        scale=10,
    )


def test_get_logits_matches_pml(pml, dtype):
    h.assert_get_logits_matches_pml(SubCenterArcFaceLoss, dtype)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(SubCenterArcFaceLoss, scale=16)


def test_float16_at_scale_64_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(SubCenterArcFaceLoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(SubCenterArcFaceLoss)


def outlier_case():
    """2 classes with 3 sub-centers each in 2D. Class 0's samples mostly sit near its second
    sub-center (at 90°), one sits 120° away; class 1's near its first (at 180°), one 80° away;
    class 2 has no samples."""
    centers = [[0, 90, 300], [180, 20, 250], [45, 135, 225]]
    weights = torch.tensor(
        [h.at_angle(a, 2.0) for row in centers for a in row], dtype=torch.float64
    ).t()
    sample_angles = [95, 180, 85, 210, 100, 260, 170]
    labels = torch.tensor([0, 1, 0, 0, 0, 1, 1])
    embeddings = torch.tensor([h.at_angle(a, 1.0) for a in sample_angles], dtype=torch.float64)
    return embeddings, labels, weights


def test_get_outliers_on_a_constructed_case():
    embeddings, labels, weights = outlier_case()
    loss_fn = SubCenterArcFaceLoss(num_classes=3, embedding_size=2, sub_centers=3).double()
    h.set_weight(loss_fn, weights)
    outliers, dominant_centers = loss_fn.get_outliers(embeddings, labels)
    # Class 0: dominant sub-center 1 (90°); 210° is 120° away (> 75°). Class 1: dominant
    # sub-center 0 (180°); 260° is 80° away. Outliers come grouped by class.
    assert outliers.tolist() == [3, 5]
    expected_centers = torch.stack([weights[:, 1], weights[:, 3], weights[:, 6]], dim=1)
    assert_close(dominant_centers, expected_centers, torch.float64)
    # At 100° only class 0's sample is still out; without centers only the indices come back.
    only_outliers = loss_fn.get_outliers(
        embeddings, labels, threshold=100, return_dominant_centers=False
    )
    assert only_outliers.tolist() == [3]


def test_get_outliers_matches_pml(pml, dtype):
    ours, theirs = h.build_pair(SubCenterArcFaceLoss, dtype, sub_centers=2)
    embeddings, labels = h.data(dtype, per_class=5)
    for threshold in (40, 75):
        our_outliers, our_centers = ours.get_outliers(embeddings, labels, threshold=threshold)
        pml_outliers, pml_centers = theirs.get_outliers(embeddings, labels, threshold=threshold)
        assert our_outliers.tolist() == pml_outliers.tolist()
        assert_close(our_centers, pml_centers, dtype)


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(SubCenterArcFaceLoss)
    loss_fn = SubCenterArcFaceLoss(num_classes=3, embedding_size=2).to(TEST_DEVICE)
    embeddings, labels, _ = outlier_case()
    outliers, _ = loss_fn.get_outliers(embeddings.float().to(TEST_DEVICE), labels.cpu())
    assert outliers.device == embeddings.to(TEST_DEVICE).device


def test_bad_input_errors():
    h.assert_common_input_errors(SubCenterArcFaceLoss)
    for sub_centers in (0, 1.5):
        with pytest.raises(ValueError, match="sub_centers"):
            SubCenterArcFaceLoss(num_classes=3, embedding_size=2, sub_centers=sub_centers)
    with pytest.raises(ValueError, match="CosineSimilarity"):
        SubCenterArcFaceLoss(num_classes=3, embedding_size=2, distance=LpDistance())
    loss_fn = SubCenterArcFaceLoss(num_classes=3, embedding_size=2)
    with pytest.raises(ValueError, match="labels"):
        loss_fn.get_outliers(torch.randn(4, 2), torch.tensor([0, 1]))


def max_of_cosines(cosines):
    """_MaxOverSubCenterCosines of given (N, K, C) cosines: x @ I with x the cosines."""
    flat = cosines.reshape(len(cosines), -1)
    identity = torch.eye(flat.shape[1], dtype=flat.dtype)
    return _MaxOverSubCenterCosines.apply(flat, identity, cosines.shape[1])


def test_max_over_sub_centers_matches_matmul_and_amax():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    weights = torch.randn(6, 3 * 4, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: _MaxOverSubCenterCosines.apply(a, b, 3), (x, weights)
    )
    ours = _MaxOverSubCenterCosines.apply(x, weights, 3)
    expected = torch.matmul(x, weights).view(5, 3, 4).amax(dim=1)
    assert torch.equal(ours, expected)
    grad = torch.randn(5, 4, dtype=torch.float64, generator=generator)
    expected_grads = torch.autograd.grad(expected, (x, weights), grad)
    for our_grad, expected_grad in zip(
        torch.autograd.grad(ours, (x, weights), grad), expected_grads
    ):
        torch.testing.assert_close(our_grad, expected_grad, rtol=1e-12, atol=1e-12)
    # Only the weights learn (frozen embeddings): no gradient is computed for x.
    frozen = _MaxOverSubCenterCosines.apply(x.detach(), weights, 3)
    (weights_only,) = torch.autograd.grad(frozen, weights, grad)
    torch.testing.assert_close(weights_only, expected_grads[1], rtol=1e-12, atol=1e-12)


def test_max_over_sub_centers_shares_ties_as_amax():
    # Sub-centers 0 and 2 tie everywhere: each gets half of the gradient.
    tied = torch.stack([torch.ones(2, 4), torch.zeros(2, 4), torch.ones(2, 4)], dim=1)
    tied.requires_grad_(True)
    (shared,) = torch.autograd.grad(max_of_cosines(tied), tied, torch.ones(2, 4))
    assert torch.equal(shared[:, 0], torch.full((2, 4), 0.5))
    assert torch.equal(shared[:, 1], torch.zeros(2, 4))
    assert torch.equal(shared[:, 2], torch.full((2, 4), 0.5))
    # A three-way tie in the first column, two-way in the second.
    x = torch.tensor([[[1.0, 2.0]], [[1.0, 0.0]], [[1.0, 2.0]]]).permute(1, 0, 2)  # (1, 3, 2)
    x = x.clone().requires_grad_(True)
    grad = torch.tensor([[0.7, 0.3]])
    (ours,) = torch.autograd.grad(max_of_cosines(x), x, grad)
    (expected,) = torch.autograd.grad(x.amax(dim=1), x, grad)
    assert torch.equal(ours, expected)  # 0.7 / 3 to each of the first column's three


def test_one_sub_center_is_arcface():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=generator, requires_grad=True)
    weights = torch.randn(3, 5, generator=generator, requires_grad=True)
    ours = _MaxOverSubCenterCosines.apply(x, weights, 1)
    assert torch.equal(ours, x @ weights)
    torch.testing.assert_close(
        torch.autograd.grad(ours.sum(), (x, weights)),
        torch.autograd.grad((x @ weights).sum(), (x, weights)),
    )


def test_scaled_unit_columns_match_normalize_and_regroup():
    """The fused weight step against F.normalize + regroup + scale, values and gradients,
    with a zero column (its norm clamped) and a gradcheck."""
    generator = torch.Generator().manual_seed(0)
    dim, num_classes, sub_centers, scale = 4, 3, 2, 5.0
    weights = torch.randn(dim, num_classes * sub_centers, dtype=torch.float64, generator=generator)
    weights[:, 3] = 0
    weights.requires_grad_(True)
    ours = _ScaledUnitColumnsBySubCenter.apply(weights, sub_centers, scale)
    regrouped = weights.view(dim, num_classes, sub_centers).transpose(1, 2).reshape(dim, -1)
    expected = scale * torch.nn.functional.normalize(regrouped, dim=0)
    torch.testing.assert_close(ours, expected, rtol=1e-14, atol=1e-14)
    upstream = torch.randn(ours.shape, dtype=torch.float64, generator=generator)
    (our_grad,) = torch.autograd.grad(ours, weights, upstream)
    (expected_grad,) = torch.autograd.grad(expected, weights, upstream)
    torch.testing.assert_close(our_grad, expected_grad, rtol=1e-12, atol=1e-12)
    # A zero scale gives zero logits whatever the weights: a zero gradient, not 0/0.
    (at_zero_scale,) = torch.autograd.grad(
        _ScaledUnitColumnsBySubCenter.apply(weights, sub_centers, 0.0), weights, upstream
    )
    assert torch.equal(at_zero_scale, torch.zeros_like(weights))
    nonzero = torch.randn(dim, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda w: _ScaledUnitColumnsBySubCenter.apply(w, sub_centers, scale), (nonzero,)
    )
