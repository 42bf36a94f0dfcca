import math

import pytest
import torch

from metric_runner.losses import P2SGradLoss
from tests.helpers import assert_close
from tests.losses import weight_loss_helpers as h


def test_hand_computed_value_and_weight_gradient():
    embeddings, labels, weights = h.tiny_case()
    loss_fn = P2SGradLoss(descriptors_dim=2, num_classes=3).double()
    h.set_weight(loss_fn, weights)
    embeddings.requires_grad_(True)
    loss = loss_fn(embeddings, labels)
    loss.backward()
    # Each call first rescales the class weights to norm n / (n + 1e-7) ≈ 1.
    unit_norms = [n / (n + 1e-7) for n in h.CLASS_NORMS]
    cosines = [
        [math.cos(h.angle_between(a, c)) * n for c, n in zip(h.CLASS_ANGLES, unit_norms)]
        for a in h.EMBEDDING_ANGLES
    ]
    residuals = [
        [cosines[i][j] - (1.0 if j == h.LABELS[i] else 0.0) for j in range(len(h.CLASS_ANGLES))]
        for i in range(len(h.LABELS))
    ]
    count = len(h.LABELS) * len(h.CLASS_ANGLES)
    assert loss.item() == pytest.approx(
        sum(r * r for row in residuals for r in row) / count, rel=1e-12
    )
    torch.testing.assert_close(
        loss_fn.weight.norm(dim=0), torch.tensor(unit_norms, dtype=torch.float64)
    )
    # P2SGrad's weight gradient: Σ_i 2(cos θ_ij - 1[j = y_i])·x̂_i / (N·C).
    for j in range(len(h.CLASS_ANGLES)):
        expected = [0.0, 0.0]
        for i, angle in enumerate(h.EMBEDDING_ANGLES):
            unit = h.at_angle(angle, 1.0)
            for d in range(2):
                expected[d] += 2 * residuals[i][j] * unit[d] / count
        torch.testing.assert_close(
            loss_fn.weight.grad[:, j], torch.tensor(expected, dtype=torch.float64)
        )


def test_closed_form_gradient_passes_gradcheck():
    from metric_runner.losses.p2s_grad_loss import CosineResidualMSE

    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 2, 0])
    assert torch.autograd.gradcheck(
        lambda e, w: CosineResidualMSE.apply(e, w, labels), (embeddings, weight)
    )


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(P2SGradLoss)


@pytest.mark.parametrize("num_classes", [h.NUM_CLASSES, 40])
def test_matches_pml(pml, dtype, num_classes):
    ours, theirs = h.build_pair(P2SGradLoss, dtype)
    embeddings, labels = h.data(dtype)
    if num_classes != h.NUM_CLASSES:
        pml_losses = pml.losses
        theirs = pml_losses.P2SGradLoss(descriptors_dim=h.DIM, num_classes=num_classes).to(dtype)
        ours = P2SGradLoss(descriptors_dim=h.DIM, num_classes=num_classes).to(dtype)
        h.set_weight(ours, theirs.weight)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_non_unit_weights_match_pml(pml, dtype):
    # PML rescales the weights to unit columns in place on each call; other norms show it.
    ours, theirs = h.build_pair(P2SGradLoss, dtype)
    scaled = theirs.weight.detach() * torch.linspace(0.5, 3, h.NUM_CLASSES, dtype=dtype)
    h.set_weight(ours, scaled)
    h.set_weight(theirs, scaled)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)
    assert_close(ours.weight.detach(), theirs.weight.detach(), dtype)


def test_weight_regularizer_adds_its_sub_loss(dtype):
    lib = h.with_submodules("metric_runner")
    plain = P2SGradLoss(descriptors_dim=h.DIM, num_classes=h.NUM_CLASSES).to(dtype)
    regularizer = lib.regularizers.RegularFaceRegularizer()
    regularized = P2SGradLoss(
        descriptors_dim=h.DIM,
        num_classes=h.NUM_CLASSES,
        weight_regularizer=regularizer,
        weight_reg_weight=0.5,
    ).to(dtype)
    h.set_weight(regularized, plain.weight)
    embeddings, labels = h.data(dtype)
    expected = plain(embeddings, labels) + 0.5 * regularizer(plain.weight.t())
    torch.testing.assert_close(regularized(embeddings, labels), expected)


def test_initial_weights_are_unit_columns():
    loss_fn = P2SGradLoss(descriptors_dim=h.DIM, num_classes=h.NUM_CLASSES)
    torch.testing.assert_close(loss_fn.weight.norm(dim=0), torch.ones(h.NUM_CLASSES))


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(P2SGradLoss)


def test_float16_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(P2SGradLoss)
    h.assert_float32_weights_take_float16_inputs(P2SGradLoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(P2SGradLoss)


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(P2SGradLoss)


def test_bad_input_errors():
    h.assert_common_input_errors(P2SGradLoss)
    loss_fn = P2SGradLoss(descriptors_dim=h.DIM, num_classes=h.NUM_CLASSES)
    embeddings, labels = h.data(torch.float32)
    with pytest.raises(ValueError, match="indices_tuple"):
        loss_fn(embeddings, labels, h.mined_tuples(labels)[0])
