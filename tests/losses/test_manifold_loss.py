import inspect
import math

import numpy as np
import pytest
import torch

from metric_runner.distances import LpDistance
from metric_runner.losses import ManifoldLoss
from tests.helpers import assert_close, clustered_embeddings
from tests.losses import tuple_loss_helpers as h

TINY_EMBEDDINGS = [[1.0, 0.0], [0.9, 0.5], [0.2, 1.3], [-0.6, 0.8], [-1.0, -0.4]]
TINY_PROXIES = [[0.7, 0.7], [-0.8, 0.3]]
TINY_ASSIGNMENT = [0, 0, 1, 1, 0]
MARGIN, ALPHA = 0.01, 0.6


def tiny_loss(lambdaC=1.0, margin=MARGIN):
    loss_fn = ManifoldLoss(l=2, K=2, lambdaC=lambdaC, alpha=ALPHA, margin=margin).double()
    with torch.no_grad():
        loss_fn.proxies.copy_(torch.tensor(TINY_PROXIES, dtype=torch.float64))
    return loss_fn


def hand_parts(margin=MARGIN):
    """(intrinsic, context) written out with numpy: the random-walk affinities of the graph of
    embeddings and proxies, then per embedding log(1 + Σ over violating other proxies)."""
    nodes = np.array(TINY_EMBEDDINGS + TINY_PROXIES)
    unit = nodes / np.linalg.norm(nodes, axis=1, keepdims=True)
    graph = np.exp(np.maximum(unit @ unit.T, 0) / 0.5)
    np.fill_diagonal(graph, 0)
    degree = graph.sum(axis=1)
    normalized = graph / np.sqrt(np.outer(degree, degree))
    affinity = (1 - ALPHA) * np.linalg.inv(np.eye(len(nodes)) - ALPHA * normalized)
    num = len(TINY_EMBEDDINGS)

    def violation_loss(score):
        total = 0.0
        for i, own in enumerate(TINY_ASSIGNMENT):
            terms = [max(score(i, k) - score(i, own) + margin, 0) for k in range(2) if k != own]
            total += math.log(1 + sum(math.exp(v) for v in terms if v > 0))
        return total / num

    def row_cosine(i, j):
        u, v = affinity[i], affinity[j]
        return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))

    intrinsic = violation_loss(lambda i, k: affinity[i, num + k])
    context = violation_loss(lambda i, k: row_cosine(i, num + k))
    return intrinsic, context


def tiny_call(loss_fn):
    embeddings = torch.tensor(TINY_EMBEDDINGS, dtype=torch.float64)
    return loss_fn(embeddings, indices_tuple=torch.tensor(TINY_ASSIGNMENT)).item()


def test_hand_computed_value():
    intrinsic, context = hand_parts()
    assert intrinsic > 0 and context > 0
    assert tiny_call(tiny_loss(lambdaC=0.7)) == pytest.approx(intrinsic + 0.7 * context, rel=1e-10)


def test_lambda_c_zero_and_inf_keep_one_part():
    intrinsic, context = hand_parts(margin=0.2)
    assert tiny_call(tiny_loss(lambdaC=0, margin=0.2)) == pytest.approx(intrinsic, rel=1e-10)
    assert tiny_call(tiny_loss(lambdaC=math.inf, margin=0.2)) == pytest.approx(context, rel=1e-10)


def build_pair(components=None, **kwargs):
    """(ours, PML's) with PML's random proxies copied into ours."""
    ours, theirs = h.build_pair(ManifoldLoss, components, l=8, **kwargs)
    with torch.no_grad():
        ours.proxies.copy_(theirs.proxies)
    return ours, theirs


def value_and_grads(loss_fn, embeddings, assignment, seed=0):
    emb = embeddings.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    value = loss_fn(emb, indices_tuple=assignment)
    emb_grad, proxy_grad = torch.autograd.grad(value, [emb, loss_fn.proxies])
    return value, emb_grad, proxy_grad


RECIPES = [
    lambda lib: {},
    lambda lib: {"distance": lib.distances.DotProductSimilarity(normalize_embeddings=False)},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("random_proxies", [False, True])
def test_matches_pml(pml, dtype, recipe, random_proxies):
    ours, theirs = build_pair(recipe, K=5, lambdaC=0.7, alpha=0.6, margin=0.05)
    embeddings, labels = clustered_embeddings(num_classes=6, per_class=4, dim=8, dtype=dtype)
    assignment = None if random_proxies else labels % 5
    for ours_part, theirs_part in zip(
        value_and_grads(ours, embeddings, assignment),
        value_and_grads(theirs, embeddings, assignment),
    ):
        assert_close(ours_part, theirs_part.to(ours_part.dtype), dtype, scale=100)


def test_random_proxies_use_every_proxy():
    loss_fn = ManifoldLoss(l=8, K=5)
    torch.manual_seed(3)
    assignment = loss_fn.proxy_assignment(None, 12, torch.device("cpu"))
    assert sorted(set(assignment.tolist())) == list(range(5)) and len(assignment) == 12


def test_signature_and_defaults_match_pml(pml):
    theirs = h.pml_class(ManifoldLoss)
    assert inspect.signature(ManifoldLoss.__init__) == inspect.signature(theirs.__init__)
    torch.manual_seed(0)
    ours_proxies = ManifoldLoss(l=8).proxies
    torch.manual_seed(0)
    assert torch.equal(ours_proxies, theirs(l=8).proxies)


def test_float32_agrees_with_float64():
    embeddings, labels = clustered_embeddings(
        num_classes=6, per_class=4, dim=8, dtype=torch.float64
    )
    loss64 = ManifoldLoss(l=8, K=5, margin=0.05).double()
    loss32 = ManifoldLoss(l=8, K=5, margin=0.05)
    with torch.no_grad():
        loss32.proxies.copy_(loss64.proxies)
    for part32, part64 in zip(
        value_and_grads(loss32, embeddings.float(), labels % 5),
        value_and_grads(loss64, embeddings, labels % 5),
    ):
        assert_close(part32, part64, torch.float32, scale=100)


def test_float16_runs_and_is_close_to_float32():
    embeddings, labels = clustered_embeddings(num_classes=6, per_class=4, dim=8)
    loss_fn = ManifoldLoss(l=8, K=5, margin=0.05)
    value32, grad32, _ = value_and_grads(loss_fn, embeddings, labels % 5)
    value16, grad16, proxy_grad = value_and_grads(loss_fn, embeddings.half(), labels % 5)
    assert value16.dtype == torch.float16 and torch.isfinite(proxy_grad).all()
    torch.testing.assert_close(value16.float(), value32, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(grad16.float(), grad32, rtol=5e-2, atol=2e-2)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        ManifoldLoss(l=8, alpha=1.5)
    with pytest.raises(ValueError, match="lambdaC"):
        ManifoldLoss(l=8, lambdaC=-1)
    with pytest.raises(ValueError, match="positive int"):
        ManifoldLoss(l=0)
    with pytest.raises(ValueError, match="similarities"):
        ManifoldLoss(l=8, distance=LpDistance())


def test_rejects_inputs_it_cannot_use():
    embeddings, labels = clustered_embeddings(num_classes=2, per_class=4, dim=8)
    loss_fn = ManifoldLoss(l=8, K=3)
    with pytest.raises(ValueError, match="does not take labels"):
        loss_fn(embeddings, labels)
    with pytest.raises(ValueError, match="ref_emb"):
        loss_fn(embeddings, ref_emb=embeddings.detach().clone())
    with pytest.raises(ValueError, match="one proxy index in"):
        loss_fn(embeddings, indices_tuple=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, K=3\)"):
        loss_fn(embeddings, indices_tuple=torch.full((8,), 3))
    with pytest.raises(ValueError, match="at least K=20"):
        ManifoldLoss(l=8, K=20)(embeddings)
    with pytest.raises(ValueError, match="l=8"):
        loss_fn(embeddings[:, :4])
