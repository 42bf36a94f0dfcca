import math

import pytest
import torch

from metric_runner.distances import LpDistance
from metric_runner.losses import SoftTripleLoss
from metric_runner.losses.soft_triple_loss import RelaxedSimilarity
from metric_runner.regularizers import SparseCentersRegularizer
from tests.losses import weight_loss_helpers as h

CENTER_OFFSETS = [0, 50]  # degrees: each class's two centers in the tiny case


def tiny_centers():
    columns = [
        h.at_angle(angle + offset, norm)
        for angle, norm in zip(h.CLASS_ANGLES, h.CLASS_NORMS)
        for offset in CENTER_OFFSETS
    ]
    return torch.tensor(columns, dtype=torch.float64).t()


def test_hand_computed_value():
    embeddings, labels, _ = h.tiny_case()
    la, gamma, margin = 3.0, 0.5, 0.2
    loss_fn = SoftTripleLoss(
        num_classes=3, embedding_size=2, centers_per_class=2, la=la, gamma=gamma, margin=margin
    ).double()
    h.set_weight(loss_fn, tiny_centers())

    def logit(i, j, _):
        sims = [
            math.cos(h.angle_between(h.EMBEDDING_ANGLES[i], h.CLASS_ANGLES[j] + o))
            for o in CENTER_OFFSETS
        ]
        exps = [math.exp(s / gamma) for s in sims]
        relaxed = sum(e * s for e, s in zip(exps, sims)) / sum(exps)
        return la * (relaxed - (margin if j == h.LABELS[i] else 0))

    assert loss_fn(embeddings, labels).item() == pytest.approx(
        h.hand_softmax_loss(logit), rel=1e-12
    )


def test_reg_weight_adds_the_paper_s_center_regularizer():
    """τ·R with R = Σ_c Σ_{t<s} sqrt(2 - 2 cos(w_c^t, w_c^s)) / (C·K·(K-1)) (eq. 11): each of the
    3 classes has one pair of centers 50° apart, so R = 3·sqrt(2 - 2 cos 50°) / 6."""
    embeddings, labels, _ = h.tiny_case()
    sizes = {"num_classes": 3, "embedding_size": 2, "centers_per_class": 2}
    plain = SoftTripleLoss(**sizes).double()
    regularised = SoftTripleLoss(**sizes, reg_weight=0.3754).double()
    for loss_fn in (plain, regularised):
        h.set_weight(loss_fn, tiny_centers())
    center_term = 3 * math.sqrt(2 - 2 * math.cos(math.radians(CENTER_OFFSETS[1]))) / 6
    expected = plain(embeddings, labels).item() + 0.3754 * center_term
    assert regularised(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)


def test_reg_weight_and_a_weight_regularizer_are_refused_together():
    with pytest.raises(ValueError, match="reg_weight .* or a weight_regularizer, not both"):
        SoftTripleLoss(
            num_classes=3,
            embedding_size=2,
            centers_per_class=2,
            reg_weight=0.1,
            weight_regularizer=SparseCentersRegularizer(num_classes=3, centers_per_class=2),
        )


def test_relaxed_similarity_gradient_matches_autograd():
    # The closed-form backward of S = Σ_k softmax_k(s/γ)·s over the K centers (dimension 1).
    sim = torch.randn(5, 4, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 3, dtype=torch.float64)
    (ours,) = torch.autograd.grad(RelaxedSimilarity.apply(sim, 0.3), sim, upstream)
    plain = torch.sum(torch.softmax(sim / 0.3, dim=1) * sim, dim=1)
    (expected,) = torch.autograd.grad(plain, sim, upstream)
    torch.testing.assert_close(ours, expected)


def test_logits_relax_over_each_class_s_own_centers():
    """Class c owns columns c·K ... (c+1)·K - 1 of fc, whatever order the computation uses."""
    loss_fn = SoftTripleLoss(num_classes=3, embedding_size=4, centers_per_class=2, gamma=0.5)
    embeddings = torch.randn(6, 4, dtype=torch.float64)
    loss_fn.fc.data = torch.randn(4, 6, dtype=torch.float64)
    cosines = torch.nn.functional.normalize(embeddings, dim=1) @ torch.nn.functional.normalize(
        loss_fn.fc.data, dim=0
    )
    expected = torch.stack(
        [
            (
                torch.softmax(cosines[:, 2 * c : 2 * c + 2] / 0.5, dim=1)
                * cosines[:, 2 * c : 2 * c + 2]
            ).sum(1)
            for c in range(3)
        ],
        dim=1,
    )
    torch.testing.assert_close(loss_fn.get_logits(embeddings), expected)


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(SoftTripleLoss)


@pytest.mark.parametrize(
    "components",
    [
        lambda lib: {},
        lambda lib: {"distance": lib.distances.DotProductSimilarity()},
        lambda lib: {"reducer": lib.reducers.SumReducer()},
    ],
)
def test_matches_pml(pml, dtype, components):
    ours, theirs = h.build_pair(
        SoftTripleLoss,
        dtype,
        components=components,
        centers_per_class=3,
        la=8,
        gamma=0.2,
        margin=0.05,
    )
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_default_arguments_match_pml(pml, dtype):
    ours, theirs = h.build_pair(SoftTripleLoss, dtype)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_mined_tuples_match_pml(pml, dtype):
    h.assert_mined_tuples_match_pml(SoftTripleLoss, dtype, centers_per_class=2)


def test_weight_regularizers_match_pml(pml, dtype):
    h.assert_weight_regularizers_match_pml(
        SoftTripleLoss,
        dtype,
        [
            lambda lib: lib.regularizers.SparseCentersRegularizer(
                num_classes=h.NUM_CLASSES, centers_per_class=3
            ),
            lambda lib: lib.regularizers.RegularFaceRegularizer(),
        ],
        centers_per_class=3,
    )


def test_get_logits_matches_pml(pml, dtype):
    h.assert_get_logits_matches_pml(SoftTripleLoss, dtype, centers_per_class=3)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(SoftTripleLoss, centers_per_class=3)


def test_float16_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(SoftTripleLoss)
    h.assert_float32_weights_take_float16_inputs(SoftTripleLoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(SoftTripleLoss, centers_per_class=3)


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(SoftTripleLoss)


def test_bad_input_errors():
    h.assert_common_input_errors(SoftTripleLoss)
    with pytest.raises(ValueError, match="similarity"):
        SoftTripleLoss(num_classes=3, embedding_size=2, distance=LpDistance())
    with pytest.raises(ValueError, match="centers_per_class"):
        SoftTripleLoss(num_classes=3, embedding_size=2, centers_per_class=0)
