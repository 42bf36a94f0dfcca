import inspect
import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, DotProductSimilarity
from metric_runner.losses import RankedListLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h

pytestmark = pytest.mark.filterwarnings("ignore:Values of Tp or Tn are too high:UserWarning")

TINY_EMBEDDINGS = [[1.0, 0.0], [0.9, 0.5], [0.2, 1.3], [-0.6, 0.8], [-1.0, -0.4], [0.3, -1.0]]
TINY_LABELS = [0, 0, 0, 1, 1, 2]
# PML adds 1e-5 per column of the batch to each weighted average's denominator.
SMOOTHING = 1e-5


def tiny_batch():
    return torch.tensor(TINY_EMBEDDINGS, dtype=torch.float64), torch.tensor(TINY_LABELS)


def unit(v):
    norm = math.hypot(*v)
    return [a / norm for a in v]


def hand_ranked_list_losses(margin, Tn, imbalance, alpha, Tp):
    x, y = [unit(v) for v in TINY_EMBEDDINGS], TINY_LABELS
    losses = []
    for i in range(len(x)):
        pos = [
            math.dist(x[i], x[j]) - (alpha - margin)
            for j in range(len(x))
            if j != i and y[j] == y[i]
        ]
        neg = [alpha - math.dist(x[i], x[k]) for k in range(len(x)) if y[k] != y[i]]
        pos = [v for v in pos if v > 0]
        neg = [v for v in neg if v > 0]
        pos_weights = [math.exp(Tp * v) for v in pos]
        neg_weights = [math.exp(Tn * v) for v in neg]
        pos_loss = sum(w * v for w, v in zip(pos_weights, pos)) / (
            sum(pos_weights) + SMOOTHING * len(x)
        )
        neg_loss = sum(w * v for w, v in zip(neg_weights, neg)) / (
            sum(neg_weights) + SMOOTHING * len(x)
        )
        losses.append((1 - imbalance) * pos_loss + imbalance * neg_loss)
    return losses


def test_hand_computed_losses():
    embeddings, labels = tiny_batch()
    args = {"margin": 0.4, "Tn": 3.0, "imbalance": 0.3, "alpha": 1.0, "Tp": 2.0}
    out = RankedListLoss(**args, reducer=DoNothingReducer())(embeddings, labels)
    expected = hand_ranked_list_losses(**args)
    assert sum(v > 0 for v in expected) == 5
    torch.testing.assert_close(out["loss"]["losses"], torch.tensor(expected, dtype=torch.float64))
    assert out["loss"]["reduction_type"] == "element"


def test_default_alpha_is_one_plus_half_the_margin():
    embeddings, labels = tiny_batch()
    expected = hand_ranked_list_losses(margin=0.4, Tn=3.0, imbalance=0.5, alpha=1.2, Tp=0)
    loss = RankedListLoss(margin=0.4, Tn=3.0)(embeddings, labels)
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-12)


RECIPES = [
    lambda lib: {},
    lambda lib: {
        "distance": lib.distances.LpDistance(p=1, normalize_embeddings=False),
        "reducer": lib.reducers.SumReducer(),
    },
    lambda lib: {
        "distance": lib.distances.LpDistance(power=2),
        "reducer": lib.reducers.AvgNonZeroReducer(),
    },
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_matches_pml(pml, dtype, recipe):
    h.assert_matches_pml(
        RankedListLoss, dtype, recipe, margin=0.3, Tn=5.0, imbalance=0.3, alpha=1.1, Tp=2.0
    )


def test_matches_pml_with_paper_defaults(pml, dtype):
    h.assert_matches_pml(RankedListLoss, dtype, margin=0.4, Tn=10)


def test_signature_and_defaults_match_pml(pml):
    theirs = h.pml_class(RankedListLoss)
    assert inspect.signature(RankedListLoss.__init__) == inspect.signature(theirs.__init__)
    ours, pml_loss = RankedListLoss(0.4, 10), theirs(0.4, 10)
    assert ours.alpha == pml_loss.alpha
    assert type(ours.distance).__name__ == type(pml_loss.distance).__name__
    assert type(ours.reducer).__name__ == type(pml_loss.reducer).__name__


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: RankedListLoss(margin=0.3, Tn=5, Tp=2))


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: RankedListLoss(margin=0.3, Tn=5, Tp=2))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: RankedListLoss(margin=0.3, Tn=5))


def test_large_temperatures_do_not_overflow():
    embeddings, labels = h.data()
    emb = embeddings.detach().float().requires_grad_(True)
    loss = RankedListLoss(margin=0.4, Tn=1000, Tp=1000)(emb, labels)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("distance", [CosineSimilarity(), DotProductSimilarity()])
def test_rejects_similarities(distance):
    # Stricter than PML, which computes a meaningless number: the message says why.
    with pytest.raises(ValueError, match="smaller means closer.*alpha - margin are distances"):
        RankedListLoss(margin=0.4, Tn=10, distance=distance)


def test_rejects_inputs_it_cannot_use():
    embeddings, labels = tiny_batch()
    loss_fn = RankedListLoss(margin=0.4, Tn=10)
    with pytest.raises(ValueError, match="needs labels"):
        loss_fn(embeddings)
    with pytest.raises(ValueError, match="indices_tuple"):
        loss_fn(embeddings, labels, h.mined_triplets(labels))
    with pytest.raises(ValueError, match="ref_emb"):
        loss_fn(embeddings, labels, ref_emb=embeddings.clone(), ref_labels=labels)
    with pytest.raises(ValueError, match="labels"):
        loss_fn(embeddings, labels[:2])


@pytest.mark.parametrize("imbalance", [-0.1, 1.5])
def test_imbalance_outside_the_unit_interval_is_refused(imbalance):
    # Outside [0, 1] one term gets a negative weight (and the loss can go negative).
    with pytest.raises(ValueError, match="imbalance") as error:
        RankedListLoss(margin=0.4, Tn=1, imbalance=imbalance)
    assert isinstance(error.value, AssertionError)  # what PML raises
