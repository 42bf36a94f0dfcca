import math

import pytest
import torch

from metric_runner.distances import DotProductSimilarity, LpDistance
from metric_runner.losses import TupletMarginLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h


def cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.hypot(*u) / math.hypot(*v)


def hand_tuplet(embeddings, pos_pairs, neg_pairs, margin_degrees, scale):
    """Per positive pair: log(1 + Σ over the listed negative pairs of its anchor (repeats
    included) of exp(s (cos θ_an − cos(θ_ap − β))))."""
    x = embeddings.tolist()
    beta = math.radians(margin_degrees)
    losses = []
    for a, p in pos_pairs:
        pos_term = math.cos(math.acos(cosine(x[a], x[p])) - beta)
        total = sum(
            math.exp(scale * (cosine(x[a], x[n]) - pos_term)) for a2, n in neg_pairs if a2 == a
        )
        losses.append(math.log(1 + total))
    return losses


def test_hand_computed_value():
    embeddings, labels = h.tiny_batch()
    pairs = h.tiny_pairs(labels.tolist())
    pos = [(i, j) for i, j, same in pairs if same]
    neg = [(i, j) for i, j, same in pairs if not same]
    expected = hand_tuplet(embeddings, pos, neg, margin_degrees=20, scale=3)
    loss = TupletMarginLoss(margin=20, scale=3)(embeddings, labels)
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-12)


def test_repeated_negative_pairs_count_once_per_repeat():
    embeddings, labels = h.tiny_batch()
    triplets = (torch.tensor([0, 0, 2]), torch.tensor([1, 1, 3]), torch.tensor([2, 2, 4]))
    out = TupletMarginLoss(margin=20, scale=3, reducer=DoNothingReducer())(
        embeddings, labels, triplets
    )
    expected = hand_tuplet(embeddings, [(0, 1), (0, 1), (2, 3)], [(0, 2), (0, 2), (2, 4)], 20, 3)
    torch.testing.assert_close(out["loss"]["losses"], torch.tensor(expected, dtype=torch.float64))
    assert out["loss"]["reduction_type"] == "pos_pair"


RECIPES = [
    lambda lib: {},
    lambda lib: {"reducer": lib.reducers.SumReducer()},
    lambda lib: {"reducer": lib.reducers.ThresholdReducer(high=3.0)},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    h.assert_matches_pml(TupletMarginLoss, dtype, recipe, with_ref=with_ref, margin=12, scale=10)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(
        TupletMarginLoss, dtype, indices=indices, with_ref=with_ref, margin=3, scale=20
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(TupletMarginLoss)
    assert TupletMarginLoss().margin == pytest.approx(0.1, rel=1e-4)


def test_angle_stats_match_pml(pml):
    embeddings, labels = h.data()
    ours, theirs = h.build_pair(TupletMarginLoss, collect_stats=True)
    triplets = h.mined_triplets(labels)
    ours(embeddings, labels, triplets)
    theirs(embeddings, labels, triplets)
    assert ours.avg_pos_angle == pytest.approx(theirs.avg_pos_angle, rel=1e-9)
    assert ours.avg_neg_angle == pytest.approx(theirs.avg_neg_angle, rel=1e-9)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: TupletMarginLoss(scale=16))
    h.assert_float32_agrees_with_float64(
        lambda: TupletMarginLoss(), indices=h.mined_pairs, with_ref=True
    )


def test_float16_at_scale_64_close_to_float32():
    h.assert_float16_close_to_float32(lambda: TupletMarginLoss(), atol=5e-2)


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: TupletMarginLoss(), h.mined_triplets)


def test_identical_and_opposite_pairs_have_finite_gradients():
    embeddings = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = TupletMarginLoss()(embeddings, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


def test_anchor_without_negatives_contributes_zero():
    embeddings, labels = h.tiny_batch()
    pairs = (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([2]), torch.tensor([4]))
    out = TupletMarginLoss(reducer=DoNothingReducer())(embeddings, labels, pairs)
    assert out["loss"]["losses"][0] == 0 and out["loss"]["losses"][1] > 0


@pytest.mark.parametrize("distance", [LpDistance(), DotProductSimilarity()])
def test_rejects_other_distances(distance):
    with pytest.raises(ValueError, match="CosineSimilarity"):
        TupletMarginLoss(distance=distance)


def test_rejects_bad_shapes():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="labels"):
        TupletMarginLoss()(embeddings, labels[:3])
    with pytest.raises(ValueError, match="2D"):
        TupletMarginLoss()(embeddings[:, 0], labels)
