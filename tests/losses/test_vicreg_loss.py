import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.losses import VICRegLoss
from metric_runner.losses.vicreg_loss import BatchCovariance
from metric_runner.reducers import DoNothingReducer
from tests.helpers import assert_close, clustered_embeddings
from tests.losses import tuple_loss_helpers as h

VIEW1 = [[1.0, 0.0, 2.0], [0.5, 1.5, -1.0], [-1.0, 0.2, 0.3], [0.3, -0.7, 1.1]]
VIEW2 = [[0.8, 0.1, 1.5], [0.4, 1.0, -0.5], [-1.2, 0.6, 0.0], [0.0, -0.2, 0.9]]
ARGS = {"invariance_lambda": 2.0, "variance_mu": 3.0, "covariance_v": 5.0, "eps": 0.1}


def hand_parts(view):
    """(Σ_j [1 − √(Var_j + ε)]_+ / d, Σ_{j≠k} Cov_jk² / d) with unbiased (co)variances."""
    n, d = len(view), len(view[0])
    means = [sum(row[j] for row in view) / n for j in range(d)]
    cov = [
        [sum((row[j] - means[j]) * (row[k] - means[k]) for row in view) / (n - 1) for k in range(d)]
        for j in range(d)
    ]
    variance = sum(max(1 - (cov[j][j] + ARGS["eps"]) ** 0.5, 0) for j in range(d)) / d
    covariance = sum(cov[j][k] ** 2 for j in range(d) for k in range(d) if j != k) / d
    return variance, covariance


def hand_vicreg():
    n, d = len(VIEW1), len(VIEW1[0])
    invariance = sum((a - b) ** 2 for r1, r2 in zip(VIEW1, VIEW2) for a, b in zip(r1, r2)) / (n * d)
    var1, cov1 = hand_parts(VIEW1)
    var2, cov2 = hand_parts(VIEW2)
    return (
        ARGS["invariance_lambda"] * invariance
        + ARGS["variance_mu"] * (var1 + var2) / 2
        + ARGS["covariance_v"] * (cov1 + cov2)
    )


def views(dtype=torch.float64):
    return torch.tensor(VIEW1, dtype=dtype), torch.tensor(VIEW2, dtype=dtype)


def test_hand_computed_value():
    emb, ref = views()
    assert VICRegLoss(**ARGS)(emb, ref_emb=ref).item() == pytest.approx(hand_vicreg(), rel=1e-12)


def test_sub_losses_and_their_reductions():
    emb, ref = views()
    out = VICRegLoss(**ARGS, reducer=DoNothingReducer())(emb, ref_emb=ref)
    assert {k: v["reduction_type"] for k, v in out.items()} == {
        "invariance_loss": "element",
        "variance_loss1": "element",
        "variance_loss2": "element",
        "covariance_loss": "already_reduced",
    }
    assert len(out["invariance_loss"]["losses"]) == 4 and len(out["variance_loss1"]["losses"]) == 3


def two_views(dtype):
    emb, _ = clustered_embeddings(num_classes=4, per_class=4, dim=6, dtype=dtype)
    ref, _ = clustered_embeddings(num_classes=4, per_class=4, dim=6, dtype=dtype, seed=1)
    return emb, ref


def value_and_grads(loss_fn, emb, ref):
    emb = emb.detach().clone().requires_grad_(True)
    ref = ref.detach().clone().requires_grad_(True)
    value = loss_fn(emb, ref_emb=ref)
    return (value, *torch.autograd.grad(value, [emb, ref]))


@pytest.mark.parametrize(
    "recipe", [lambda lib: {}, lambda lib: {"reducer": lib.reducers.SumReducer()}]
)
def test_matches_pml(pml, dtype, recipe):
    ours, theirs = h.build_pair(VICRegLoss, recipe, **ARGS)
    emb, ref = two_views(dtype)
    for ours_part, theirs_part in zip(
        value_and_grads(ours, emb, ref), value_and_grads(theirs, emb, ref)
    ):
        assert_close(ours_part, theirs_part, dtype, scale=10)


def test_parts_match_pml(pml):
    ours, theirs = h.build_pair(VICRegLoss)
    emb, ref = two_views(torch.float64)
    assert_close(ours.invariance_loss(emb, ref), theirs.invariance_loss(emb, ref), torch.float64)
    for mine, pmls in zip(ours.variance_loss(emb, ref), theirs.variance_loss(emb, ref)):
        assert_close(mine, pmls, torch.float64)
    assert_close(ours.covariance_loss(emb, ref), theirs.covariance_loss(emb, ref), torch.float64)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(VICRegLoss)


def test_float32_agrees_with_float64():
    emb, ref = two_views(torch.float64)
    for part32, part64 in zip(
        value_and_grads(VICRegLoss(), emb.float(), ref.float()),
        value_and_grads(VICRegLoss(), emb, ref),
    ):
        assert_close(part32, part64, torch.float32, scale=10)


def test_float16_close_to_float32():
    emb, ref = two_views(torch.float32)
    value16, grad16, _ = value_and_grads(VICRegLoss(), emb.half(), ref.half())
    value32, grad32, _ = value_and_grads(VICRegLoss(), emb, ref)
    assert value16.dtype == torch.float16
    torch.testing.assert_close(value16.float(), value32, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(grad16.float(), grad32, rtol=5e-2, atol=2e-2)


def test_rejects_inputs_it_cannot_use():
    emb, ref = views()
    with pytest.raises(ValueError, match="cannot use a distance"):
        VICRegLoss(distance=CosineSimilarity())
    with pytest.raises(ValueError, match="no labels"):
        VICRegLoss()(emb, torch.arange(4), ref_emb=ref, ref_labels=torch.arange(4))
    with pytest.raises(ValueError, match="same shape"):
        VICRegLoss()(emb, ref_emb=ref[:3])


def test_batch_covariance_gradient_matches_finite_differences():
    views = [torch.randn(7, 4, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert torch.autograd.gradcheck(BatchCovariance.apply, views)
    expected = torch.stack([torch.cov(view.t()) for view in views])
    assert_close(BatchCovariance.apply(*views), expected, torch.float64)


def test_identical_views_give_the_plain_formulas_gradient():
    """A sample whose two views coincide sits at the norm's kink; its gradient must still be
    the one of mean (z − z')², i.e. only the regularisers' part."""
    emb, ref = two_views(torch.float64)
    ref = ref.clone()
    ref[0] = emb[0]
    loss = VICRegLoss(reducer=DoNothingReducer())
    emb_ = emb.clone().requires_grad_(True)
    invariance = loss(emb_, ref_emb=ref)["invariance_loss"]["losses"]
    (grad,) = torch.autograd.grad(invariance.sum(), emb_)
    emb_plain = emb.clone().requires_grad_(True)
    plain = torch.mean((emb_plain - ref) ** 2, dim=1) * loss.invariance_lambda
    (expected,) = torch.autograd.grad(plain.sum(), emb_plain)
    assert torch.isfinite(grad).all() and grad[0].abs().max() == 0
    assert_close(grad, expected, torch.float64)
