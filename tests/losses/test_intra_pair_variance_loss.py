import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.losses import IntraPairVarianceLoss
from metric_runner.reducers import DoNothingReducer
from metric_runner.utils import loss_and_miner_utils as lmu
from tests.helpers import assert_close
from tests.losses import tuple_loss_helpers as h

# Positive pairs at different similarities, so both halves of the loss are nonzero.
TINY_EMBEDDINGS = [[1.0, 0.0], [0.9, 0.5], [0.2, 1.3], [-0.6, 0.8], [-1.0, -0.4], [0.3, -1.0]]
TINY_LABELS = [0, 0, 0, 1, 1, 2]


def tiny_batch():
    return torch.tensor(TINY_EMBEDDINGS, dtype=torch.float64), torch.tensor(TINY_LABELS)


def mean(values):
    return sum(values) / len(values)


def hand_losses(embeddings, labels, pair_value, pos_eps, neg_eps, is_similarity):
    pairs = h.tiny_pairs(labels.tolist())
    x = embeddings.tolist()
    pos = [pair_value(x[i], x[j]) for i, j, same in pairs if same]
    neg = [pair_value(x[i], x[j]) for i, j, same in pairs if not same]
    mu_pos, mu_neg = mean(pos), mean(neg)
    if is_similarity:
        pos_losses = [max((1 - pos_eps) * mu_pos - s, 0) ** 2 for s in pos]
        neg_losses = [max(s - (1 + neg_eps) * mu_neg, 0) ** 2 for s in neg]
    else:
        pos_losses = [max(d - (1 + pos_eps) * mu_pos, 0) ** 2 for d in pos]
        neg_losses = [max((1 - neg_eps) * mu_neg - d, 0) ** 2 for d in neg]
    return pos_losses, neg_losses


def cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.hypot(*u) / math.hypot(*v)


def test_hand_computed_value_with_cosine_similarity():
    embeddings, labels = tiny_batch()
    pos, neg = hand_losses(embeddings, labels, cosine, 0.1, 0.2, is_similarity=True)
    assert sum(pos) > 0 and sum(neg) > 0
    loss = IntraPairVarianceLoss(pos_eps=0.1, neg_eps=0.2)(embeddings, labels)
    assert loss.item() == pytest.approx(mean(pos) + mean(neg), rel=1e-12)


def test_hand_computed_value_with_a_distance_flips_the_inequalities():
    embeddings, labels = tiny_batch()
    pos, neg = hand_losses(embeddings, labels, math.dist, 0.1, 0.2, is_similarity=False)
    assert sum(pos) > 0 and sum(neg) > 0
    loss_fn = IntraPairVarianceLoss(
        pos_eps=0.1, neg_eps=0.2, distance=LpDistance(normalize_embeddings=False)
    )
    assert loss_fn(embeddings, labels).item() == pytest.approx(mean(pos) + mean(neg), rel=1e-12)


def test_unreduced_losses_are_per_pair():
    embeddings, labels = tiny_batch()
    out = IntraPairVarianceLoss(reducer=DoNothingReducer())(embeddings, labels)
    pos, neg = hand_losses(embeddings, labels, cosine, 0.01, 0.01, is_similarity=True)
    assert out["pos_loss"]["reduction_type"] == "pos_pair"
    assert out["neg_loss"]["reduction_type"] == "neg_pair"
    torch.testing.assert_close(out["pos_loss"]["losses"], torch.tensor(pos, dtype=torch.float64))
    torch.testing.assert_close(out["neg_loss"]["losses"], torch.tensor(neg, dtype=torch.float64))


RECIPES = [
    lambda lib: {},
    lambda lib: {"distance": lib.distances.LpDistance(), "reducer": lib.reducers.SumReducer()},
    lambda lib: {
        "distance": lib.distances.LpDistance(power=2),
        "reducer": lib.reducers.AvgNonZeroReducer(),
    },
    lambda lib: {"reducer": lib.reducers.PerAnchorReducer()},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    h.assert_matches_pml(
        IntraPairVarianceLoss, dtype, recipe, with_ref=with_ref, pos_eps=0.05, neg_eps=0.2
    )


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
def test_matches_pml_with_mined_tuples(pml, dtype, indices):
    recipe = lambda lib: {"distance": lib.distances.LpDistance()}  # noqa: E731
    h.assert_matches_pml(
        IntraPairVarianceLoss, dtype, recipe, indices=indices, pos_eps=0.1, neg_eps=0.3
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(IntraPairVarianceLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: IntraPairVarianceLoss(0.1, 0.2))
    h.assert_float32_agrees_with_float64(
        lambda: IntraPairVarianceLoss(distance=LpDistance()), indices=h.mined_pairs, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: IntraPairVarianceLoss(0.1, 0.2))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: IntraPairVarianceLoss(), h.mined_triplets)


def test_works_from_indices_tuple_alone():
    embeddings, labels = h.data()
    pairs = h.mined_pairs(labels)
    loss_fn = IntraPairVarianceLoss(0.1, 0.2)
    assert loss_fn(embeddings, None, pairs).item() == pytest.approx(
        loss_fn(embeddings, labels, pairs).item()
    )


@pytest.mark.parametrize("distance", [CosineSimilarity(), LpDistance()], ids=["cosine", "lp"])
@pytest.mark.parametrize("with_ref", [False, True])
def test_all_pairs_path_equals_the_mined_path_given_every_pair(dtype, distance, with_ref):
    embeddings, labels = h.data(dtype)
    ref = h.ref_data(dtype) if with_ref else None
    all_pairs = lmu.get_all_pairs_indices(labels, None if ref is None else ref[1])
    loss_fn = IntraPairVarianceLoss(0.1, 0.2, distance=distance)
    fast = h.value_and_grads(loss_fn, embeddings, labels, ref=ref)
    mined = h.value_and_grads(loss_fn, embeddings, labels, all_pairs, ref=ref)
    for got, want in zip(fast, mined):
        if want is not None:
            assert_close(got, want, dtype)
    unreduced = IntraPairVarianceLoss(0.1, 0.2, distance=distance, reducer=DoNothingReducer())
    kwargs = {} if ref is None else {"ref_emb": ref[0], "ref_labels": ref[1]}
    fast_dict = unreduced(embeddings, labels, **kwargs)
    mined_dict = unreduced(embeddings, labels, all_pairs, **kwargs)
    for name in ("pos_loss", "neg_loss"):
        assert_close(fast_dict[name]["losses"], mined_dict[name]["losses"], dtype)
        for got, want in zip(fast_dict[name]["indices"], mined_dict[name]["indices"]):
            assert torch.equal(got, want)


@pytest.mark.parametrize("distance", [CosineSimilarity(), LpDistance()], ids=["cosine", "lp"])
def test_gradients_pass_gradcheck(distance):
    embeddings, labels = tiny_batch()
    loss_fn = IntraPairVarianceLoss(0.1, 0.2, distance=distance)
    assert torch.autograd.gradcheck(
        lambda x: loss_fn(x, labels), (embeddings.requires_grad_(True),)
    )
