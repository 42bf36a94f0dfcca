import math

import pytest
import torch

from metric_runner.distances import LpDistance
from metric_runner.losses import MultiSimilarityLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h


def hand_anchor_losses(embeddings, labels, alpha, beta, pos_exponent, neg_exponent):
    """Per anchor: 1/alpha log(1 + sum_pos exp(alpha e_pos)) + 1/beta log(1 + sum_neg
    exp(beta e_neg)), e_pos and e_neg being functions of the two embeddings."""
    pos_sums, neg_sums = [0.0] * len(labels), [0.0] * len(labels)
    for i, j, same in h.tiny_pairs(labels.tolist()):
        if same:
            pos_sums[i] += math.exp(alpha * pos_exponent(embeddings[i], embeddings[j]))
        else:
            neg_sums[i] += math.exp(beta * neg_exponent(embeddings[i], embeddings[j]))
    return [math.log1p(p) / alpha + math.log1p(n) / beta for p, n in zip(pos_sums, neg_sums)]


def test_hand_computed_value_with_cosine_similarity():
    # Positives pay for s < base, negatives for s > base.
    embeddings, labels = h.tiny_batch()
    expected = hand_anchor_losses(
        embeddings, labels, 2, 10, lambda x, y: 0.4 - float(x @ y), lambda x, y: float(x @ y) - 0.4
    )
    loss_fn = MultiSimilarityLoss(alpha=2, beta=10, base=0.4)
    assert loss_fn(embeddings, labels).item() == pytest.approx(sum(expected) / 5, rel=1e-12)


def test_hand_computed_per_anchor_losses_with_a_distance():
    # With a distance the signs flip: positives pay for d > base, negatives for d < base.
    embeddings, labels = h.tiny_batch()
    dist = lambda x, y: math.dist(x.tolist(), y.tolist())  # noqa: E731
    expected = hand_anchor_losses(
        embeddings, labels, 3, 5, lambda x, y: dist(x, y) - 1.2, lambda x, y: 1.2 - dist(x, y)
    )
    loss_fn = MultiSimilarityLoss(
        alpha=3, beta=5, base=1.2, distance=LpDistance(), reducer=DoNothingReducer()
    )
    out = loss_fn(embeddings, labels)["loss"]
    assert out["reduction_type"] == "element"
    assert out["indices"].tolist() == list(range(5))
    assert out["losses"].tolist() == pytest.approx(expected, rel=1e-12)


def test_mined_pairs_restrict_each_anchor_and_repeats_count_once():
    embeddings, labels = h.tiny_batch()
    sim = embeddings @ embeddings.t()
    pairs = (
        torch.tensor([0, 0, 2]),
        torch.tensor([1, 1, 3]),
        torch.tensor([0, 0, 3]),
        torch.tensor([2, 2, 4]),
    )
    out = MultiSimilarityLoss(reducer=DoNothingReducer())(embeddings, labels, pairs)["loss"]
    expected = torch.zeros(5, dtype=torch.float64)
    expected[0] = (
        torch.log1p(torch.exp(-2 * (sim[0, 1] - 0.5))) / 2
        + torch.log1p(torch.exp(50 * (sim[0, 2] - 0.5))) / 50
    )
    expected[2] = torch.log1p(torch.exp(-2 * (sim[2, 3] - 0.5))) / 2
    expected[3] = torch.log1p(torch.exp(50 * (sim[3, 4] - 0.5))) / 50
    torch.testing.assert_close(out["losses"], expected)


def test_large_exponents_stay_finite():
    # beta (s - base) up to 500: a naive sum of exps would overflow.
    embeddings, labels = h.tiny_batch()
    embeddings = embeddings.clone().requires_grad_(True)
    value = MultiSimilarityLoss(beta=1000, base=0)(embeddings, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(embeddings.grad).all()


RECIPES = [
    lambda lib: {},
    lambda lib: {"distance": lib.distances.LpDistance(), "reducer": lib.reducers.SumReducer()},
    lambda lib: {"distance": lib.distances.DotProductSimilarity(normalize_embeddings=False)},
    lambda lib: {"reducer": lib.reducers.AvgNonZeroReducer()},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    base = 1.0 if "LpDistance" in repr(recipe(h.library("metric_runner"))) else 0.3
    h.assert_matches_pml(
        MultiSimilarityLoss, dtype, recipe, with_ref=with_ref, alpha=1.5, beta=20, base=base
    )


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(
        MultiSimilarityLoss, dtype, indices=indices, with_ref=with_ref, alpha=1.5, beta=20, base=0.3
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(MultiSimilarityLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: MultiSimilarityLoss(beta=20, base=0.3))
    h.assert_float32_agrees_with_float64(
        lambda: MultiSimilarityLoss(base=0.3), indices=h.mined_triplets, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: MultiSimilarityLoss(beta=20, base=0.3))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: MultiSimilarityLoss(base=0.3), h.mined_pairs)


def test_zero_loss_without_pairs():
    embeddings, labels = h.tiny_batch()
    no_pairs = tuple(torch.empty(0, dtype=torch.long) for _ in range(4))
    h.assert_zero_loss_with_gradient(MultiSimilarityLoss(), embeddings, labels, no_pairs)
