import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.losses import MarginLoss
from metric_runner.reducers import DoNothingReducer, MeanReducer
from metric_runner.utils import loss_and_miner_utils as lmu
from tests.losses import tuple_loss_helpers as h


def hand_triplet_terms(embeddings, labels, margin, beta, ref=None, similarity=False):
    """{(a, p, n): (positive term, negative term)} over every valid triplet, where beta is a
    number or a per-class list: [d_ap − β + margin]_+ and [β − d_an + margin]_+ (flipped for a
    similarity)."""
    ref_emb, ref_labels = (embeddings, labels) if ref is None else ref
    x, r = embeddings.tolist(), ref_emb.tolist()

    def d(u, v):
        return -sum(a * b for a, b in zip(u, v)) if similarity else math.dist(u, v)

    terms = {}
    for a, p, same in h.tiny_pairs(labels.tolist(), h.as_list(None if ref is None else ref_labels)):
        if not same:
            continue
        b = beta[labels[a]] if isinstance(beta, list) else beta
        b = -b if similarity else b
        for n in range(len(r)):
            if ref_labels[n] != labels[a]:
                terms[(a, p, n)] = (
                    max(d(x[a], r[p]) - b + margin, 0),
                    max(b - d(x[a], r[n]) + margin, 0),
                )
    return terms


def divided_sum(terms):
    values = [v for pair in terms.values() for v in pair]
    return sum(values) / sum(v > 0 for v in values)


@pytest.mark.parametrize("similarity", [False, True])
def test_hand_computed_value_divides_by_the_nonzero_terms(similarity):
    embeddings, labels = h.tiny_batch()
    margin, beta = (0.1, 0.4) if similarity else (0.3, 1.0)
    terms = hand_triplet_terms(embeddings, labels, margin, beta, similarity=similarity)
    distance = CosineSimilarity() if similarity else None
    loss_fn = MarginLoss(margin=margin, beta=beta, distance=distance)
    # beta is stored in float32, as in PML.
    assert loss_fn(embeddings, labels).item() == pytest.approx(divided_sum(terms), rel=1e-6)


def test_unreduced_losses_and_divisor_of_every_triplet():
    embeddings, labels = h.tiny_batch()
    terms = hand_triplet_terms(embeddings, labels, 0.3, 1.0)
    out = MarginLoss(margin=0.3, beta=1.0, reducer=DoNothingReducer())(embeddings, labels)
    loss = out["margin_loss"]
    assert loss["reduction_type"] == "triplet"
    got = dict(zip(zip(*[x.tolist() for x in loss["indices"]]), loss["losses"].tolist()))
    assert got == pytest.approx({k: sum(v) for k, v in terms.items()}, abs=1e-12)
    assert loss["divisor"].item() == sum(v > 0 for pair in terms.values() for v in pair)
    assert out["beta_reg_loss"]["losses"] == 0  # beta is fixed: no regularizer


def test_learned_per_class_beta_and_its_regularizer():
    embeddings, labels = h.tiny_batch()
    beta = [0.9, 1.1, 1.3]
    loss_fn = MarginLoss(margin=0.2, nu=0.5, beta=1.0, learn_beta=True, num_classes=3)
    assert isinstance(loss_fn.beta, torch.nn.Parameter) and loss_fn.beta.shape == (3,)
    with torch.no_grad():
        loss_fn.beta.copy_(torch.tensor(beta))
    terms = hand_triplet_terms(embeddings, labels, 0.2, beta)
    divisor = sum(v > 0 for pair in terms.values() for v in pair)
    regularizer = sum(0.5 * beta[labels[a]] for a, _, _ in terms) / divisor
    value = loss_fn(embeddings.double(), labels)
    assert value.item() == pytest.approx(divided_sum(terms) + regularizer, rel=1e-6)
    value.backward()
    assert loss_fn.beta.grad is not None and loss_fn.beta.grad[2] == 0  # class 2 anchors nothing


def test_learned_scalar_beta_regularizer_is_nu_beta():
    embeddings, labels = h.tiny_batch()
    loss_fn = MarginLoss(margin=0.3, nu=0.25, beta=1.0, learn_beta=True)
    terms = hand_triplet_terms(embeddings, labels, 0.3, 1.0)
    value = loss_fn(embeddings.double(), labels)
    assert value.item() == pytest.approx(divided_sum(terms) + 0.25, rel=1e-6)
    assert list(loss_fn.state_dict()) == ["beta"]
    assert list(MarginLoss().state_dict()) == []  # a fixed beta is not a parameter


def test_all_triplets_grid_equals_the_listed_triplets():
    embeddings, labels = h.data(torch.float64)
    loss_fn = MarginLoss(margin=0.1, beta=0.8, num_classes=5, reducer=DoNothingReducer())
    grid = loss_fn(embeddings, labels)["margin_loss"]
    listed = loss_fn(embeddings, labels, lmu.get_all_triplets_indices(labels))["margin_loss"]
    for key in ("losses", "divisor"):
        torch.testing.assert_close(grid[key], listed[key])
    assert all(torch.equal(g, x) for g, x in zip(grid["indices"], listed["indices"]))


def test_random_triplets_per_anchor():
    embeddings, labels = h.data(torch.float64)
    torch.manual_seed(0)
    out = MarginLoss(triplets_per_anchor=3, reducer=DoNothingReducer())(embeddings, labels)[
        "margin_loss"
    ]
    a, p, n = out["indices"]
    assert torch.all(torch.bincount(a, minlength=len(labels)) == 3)
    assert (
        torch.all(labels[a] == labels[p])
        and torch.all(labels[a] != labels[n])
        and torch.all(a != p)
    )
    dist = torch.cdist(
        torch.nn.functional.normalize(embeddings), torch.nn.functional.normalize(embeddings)
    )
    expected = torch.relu(dist[a, p] - 1.2 + 0.2) + torch.relu(1.2 - dist[a, n] + 0.2)
    torch.testing.assert_close(out["losses"], expected)


RECIPES = [
    lambda lib: {},
    lambda lib: {"distance": lib.distances.CosineSimilarity()},
    lambda lib: {
        "distance": lib.distances.LpDistance(power=2),
        "reducer": lib.reducers.MeanReducer(),
    },
]
BETAS = [
    {"beta": 0.9},
    {"beta": 0.9, "learn_beta": True, "nu": 0.1},
    {"beta": 0.9, "learn_beta": True, "nu": 0.1, "num_classes": 6},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("betas", BETAS)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, betas, with_ref):
    if "CosineSimilarity" in repr(recipe(h.library("metric_runner"))):
        betas = {**betas, "beta": 0.3}
    h.assert_matches_pml(MarginLoss, dtype, recipe, with_ref=with_ref, margin=0.15, **betas)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(
        MarginLoss,
        dtype,
        indices=indices,
        with_ref=with_ref,
        margin=0.1,
        beta=1.0,
        learn_beta=True,
        nu=0.2,
        num_classes=6,
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(MarginLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: MarginLoss(beta=1.0))
    h.assert_float32_agrees_with_float64(
        lambda: MarginLoss(beta=1.0), indices=h.mined_pairs, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: MarginLoss(beta=1.0))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: MarginLoss(beta=1.0, num_classes=5), h.mined_triplets)


def test_zero_loss_without_triplets():
    embeddings, labels = h.tiny_batch()
    h.assert_zero_loss_with_gradient(
        MarginLoss(learn_beta=True, nu=0.1), embeddings, torch.zeros_like(labels)
    )


def test_works_with_mined_tuples_and_no_labels():
    embeddings, labels = h.tiny_batch()
    triplets = (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([4, 0]))
    terms = hand_triplet_terms(embeddings, labels, 0.2, 1.2)
    expected = {k: terms[k] for k in [(0, 1, 4), (2, 3, 0)]}
    got = MarginLoss(reducer=MeanReducer())(embeddings, None, triplets)
    assert got.item() == pytest.approx(sum(sum(v) for v in expected.values()) / 2, rel=1e-12)


def test_bad_input_errors():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="triplets_per_anchor"):
        MarginLoss(triplets_per_anchor="some")
    with pytest.raises(ValueError, match="num_classes needs labels"):
        MarginLoss(num_classes=3)(embeddings, None, h.mined_triplets(labels))
