import math

import pytest
import torch

from metric_runner.distances import DotProductSimilarity, LpDistance
from metric_runner.losses import CircleLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h


def hand_anchor_losses(embeddings, labels, m, gamma):
    """Per anchor: log(1 + Σ_n exp(γ α_n (s_n − m)) Σ_p exp(−γ α_p (s_p − 1 + m))), 0 for an
    anchor without positives or negatives. The tiny batch is on the unit circle, so s = x·y."""
    x = embeddings.tolist()
    losses = []
    for i in range(len(x)):
        pos_sum = neg_sum = 0.0
        for j in range(len(x)):
            if j == i:
                continue
            s = sum(a * b for a, b in zip(x[i], x[j]))
            if labels[j] == labels[i]:
                pos_sum += math.exp(-gamma * max(1 + m - s, 0) * (s - (1 - m)))
            else:
                neg_sum += math.exp(gamma * max(s + m, 0) * (s - m))
        losses.append(math.log1p(pos_sum * neg_sum) if pos_sum and neg_sum else 0.0)
    return losses


@pytest.mark.parametrize(("m", "gamma"), [(0.4, 80), (0.25, 4)])
def test_hand_computed_value_averages_nonzero_anchors(m, gamma):
    embeddings, labels = h.tiny_batch()
    losses = hand_anchor_losses(embeddings, labels, m, gamma)
    nonzero = [v for v in losses if v > 0]
    assert CircleLoss(m=m, gamma=gamma)(embeddings, labels).item() == pytest.approx(
        sum(nonzero) / len(nonzero), rel=1e-12
    )


def test_unreduced_losses_per_anchor():
    embeddings, labels = h.tiny_batch()
    out = CircleLoss(m=0.3, gamma=2, reducer=DoNothingReducer())(embeddings, labels)["loss"]
    assert out["reduction_type"] == "element"
    assert out["indices"].tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(
        out["losses"],
        torch.tensor(hand_anchor_losses(embeddings, labels, 0.3, 2), dtype=torch.float64),
    )


def test_weights_are_constants_for_the_gradient():
    # Two points of one class and one of another: the gradient of the loss equals the one
    # computed with α_p, α_n frozen at their values.
    embeddings = torch.tensor(
        [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64, requires_grad=True
    )
    labels = torch.tensor([0, 0, 1])
    m, gamma = 0.25, 3.0
    CircleLoss(m=m, gamma=gamma)(embeddings, labels).backward()
    x = embeddings.detach().clone().requires_grad_(True)
    unit = torch.nn.functional.normalize(x)
    sims = unit @ unit.t()
    frozen = sims.detach()
    total = 0
    for i, (p, n) in enumerate([(1, 2), (0, 2), (None, None)]):
        if p is None:
            continue
        logit_p = -gamma * torch.relu(1 + m - frozen[i, p]) * (sims[i, p] - (1 - m))
        logit_n = gamma * torch.relu(frozen[i, n] + m) * (sims[i, n] - m)
        total = total + torch.nn.functional.softplus(logit_p + logit_n)
    (total / 2).backward()
    torch.testing.assert_close(embeddings.grad, x.grad)


RECIPES = [
    lambda lib: {},
    lambda lib: {"reducer": lib.reducers.MeanReducer()},
    lambda lib: {"reducer": lib.reducers.SumReducer()},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    h.assert_matches_pml(CircleLoss, dtype, recipe, with_ref=with_ref, m=0.25, gamma=32)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(CircleLoss, dtype, indices=indices, with_ref=with_ref, m=0.3, gamma=64)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(CircleLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: CircleLoss(gamma=16))
    h.assert_float32_agrees_with_float64(
        lambda: CircleLoss(m=0.3), indices=h.mined_pairs, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: CircleLoss(gamma=16), atol=5e-2)


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: CircleLoss(), h.mined_triplets)


def test_zero_loss_without_positive_pairs():
    embeddings, labels = h.tiny_batch()
    h.assert_zero_loss_with_gradient(CircleLoss(), embeddings, torch.arange(len(labels)))


@pytest.mark.parametrize("distance", [LpDistance(), DotProductSimilarity()])
def test_other_distances_are_rejected(distance):
    with pytest.raises(ValueError, match=r"CircleLoss needs CosineSimilarity"):
        CircleLoss(distance=distance)


def test_bad_indices_tuple_is_rejected():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="4-tuple"):
        CircleLoss()(embeddings, labels, (labels, labels))
