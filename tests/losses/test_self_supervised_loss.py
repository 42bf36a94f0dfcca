import math

import pytest
import torch

from metric_runner.distances import LpDistance
from metric_runner.losses import ContrastiveLoss, MarginLoss, SelfSupervisedLoss
from metric_runner.reducers import SumReducer
from tests.helpers import assert_close, clustered_embeddings
from tests.losses import tuple_loss_helpers as h

VIEW1 = [[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]]
VIEW2 = [[0.8, 0.3], [0.5, 1.5], [-2.0, 0.0]]


def summed_contrastive():
    """Sum over pairs of d (positives) and [3 − d]_+ (negatives), on raw Euclidean distances."""
    distance = LpDistance(normalize_embeddings=False)
    return ContrastiveLoss(pos_margin=0, neg_margin=3, distance=distance, reducer=SumReducer())


def pair_term(x, y, same):
    d = math.dist(x, y)
    return d if same else max(3 - d, 0)


def test_hand_computed_symmetric_value():
    # Both views are anchors: every ordered pair of the 6 views but self-pairs; views of the
    # same sample are the positives.
    views = VIEW1 + VIEW2
    expected = sum(
        pair_term(views[i], views[j], i % 3 == j % 3) for i in range(6) for j in range(6) if i != j
    )
    loss = SelfSupervisedLoss(summed_contrastive())(torch.tensor(VIEW1), torch.tensor(VIEW2))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_hand_computed_one_sided_value():
    # Only the first view is anchored, against every row of the second view.
    expected = sum(pair_term(VIEW1[i], VIEW2[j], i == j) for i in range(3) for j in range(3))
    loss_fn = SelfSupervisedLoss(summed_contrastive(), symmetric=False)
    assert loss_fn(torch.tensor(VIEW1), torch.tensor(VIEW2)).item() == pytest.approx(
        expected, rel=1e-6
    )


INNER = [
    lambda lib: lib.losses.ContrastiveLoss(pos_margin=0.1, neg_margin=0.9),
    lambda lib: lib.losses.TripletMarginLoss(margin=0.3),
    lambda lib: lib.losses.TupletMarginLoss(scale=8),
    lambda lib: lib.losses.NTXentLoss(temperature=0.2),
]


@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_pml(pml, dtype, inner, symmetric):
    emb, _ = clustered_embeddings(num_classes=6, per_class=1, dim=8, dtype=dtype)
    ref = emb.detach() + 0.3 * torch.randn(
        emb.shape, generator=torch.Generator().manual_seed(1), dtype=dtype
    )
    results = []
    for root in ("metric_runner", "pytorch_metric_learning"):
        lib = h.library(root)
        loss_fn = lib.losses.SelfSupervisedLoss(inner(lib), symmetric=symmetric)
        x, y = emb.detach().clone().requires_grad_(True), ref.clone().requires_grad_(True)
        value = loss_fn(x, y)
        grads = torch.autograd.grad(value, [x, y], allow_unused=True)
        results.append(
            (value, *(torch.zeros_like(v) if g is None else g for v, g in zip((x, y), grads)))
        )
    for ours, theirs in zip(*results):
        assert_close(ours, theirs, dtype, scale=10)


def test_supported_losses_match_pml(pml):
    theirs = h.library("pytorch_metric_learning").losses.SelfSupervisedLoss
    assert sorted(SelfSupervisedLoss.supported_losses()) == sorted(theirs.supported_losses())


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="does not support MarginLoss"):
        SelfSupervisedLoss(MarginLoss())
    with pytest.raises(ValueError, match="same shape"):
        SelfSupervisedLoss(ContrastiveLoss())(torch.tensor(VIEW1), torch.tensor(VIEW2[:2]))
