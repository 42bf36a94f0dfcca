import math

import pytest
import torch
import torch.nn.functional as F

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.losses import AngularLoss
from metric_runner.reducers import DoNothingReducer, PerAnchorReducer
from tests.helpers import assert_close
from tests.losses import tuple_loss_helpers as h


def unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def dot(u, v):
    return sum(x * y for x, y in zip(u, v))


def hand_pair_losses(embeddings, labels, alpha, ref=None):
    """{(a, p): log(1 + Σ_n exp f_apn)} over every positive pair, on unit vectors."""
    ref_emb, ref_labels = (embeddings, labels) if ref is None else ref
    x = [unit(v) for v in embeddings.tolist()]
    r = [unit(v) for v in ref_emb.tolist()]
    t = math.tan(math.radians(alpha)) ** 2
    losses = {}
    for a, p, same in h.tiny_pairs(labels.tolist(), h.as_list(None if ref is None else ref_labels)):
        if not same:
            continue
        total = 0.0
        for n in range(len(r)):
            if ref_labels[n] != labels[a]:
                pair_sum = [xa + xp for xa, xp in zip(x[a], r[p])]
                total += math.exp(4 * t * dot(pair_sum, r[n]) - 2 * (1 + t) * dot(x[a], r[p]))
        losses[(a, p)] = math.log1p(total)
    return losses


def unreduced(loss_fn, *args, **kwargs):
    out = loss_fn(*args, **kwargs)["loss"]
    assert out["reduction_type"] == "pos_pair"
    return dict(zip(zip(*[x.tolist() for x in out["indices"]]), out["losses"].flatten().tolist()))


def test_hand_computed_value_is_the_mean_over_positive_pairs():
    embeddings, labels = h.tiny_batch()
    expected = hand_pair_losses(embeddings, labels, alpha=40)
    got = AngularLoss()(embeddings, labels)
    assert got.item() == pytest.approx(sum(expected.values()) / len(expected), rel=1e-12)


@pytest.mark.parametrize("alpha", [36, 50])
def test_unreduced_losses_per_pair_and_every_embedding_normalized(alpha):
    # Scaling rows must not change anything: anchors, positives AND negatives are unit vectors.
    embeddings, labels = h.tiny_batch()
    scaled = embeddings * torch.tensor([[1.0], [2.0], [0.5], [3.0], [4.0]], dtype=torch.float64)
    expected = hand_pair_losses(embeddings, labels, alpha)
    got = unreduced(AngularLoss(alpha=alpha, reducer=DoNothingReducer()), scaled, labels)
    assert got == pytest.approx(expected, rel=1e-12)


def test_reference_set_supplies_positives_and_negatives():
    embeddings, labels = h.tiny_batch()
    ref_emb, ref_labels = embeddings.flip(0)[:4].roll(1, dims=1), torch.tensor([2, 1, 1, 0])
    expected = hand_pair_losses(embeddings, labels, 45, ref=(ref_emb, ref_labels))
    loss_fn = AngularLoss(alpha=45, reducer=DoNothingReducer())
    got = unreduced(loss_fn, embeddings, labels, ref_emb=ref_emb, ref_labels=ref_labels)
    assert got == pytest.approx(expected, rel=1e-12)


def test_mined_tuples_give_their_positive_pairs_and_label_negatives():
    # Negatives always come from the labels; mined negative pairs are not used.
    embeddings, labels = h.tiny_batch()
    pairs = (torch.tensor([0, 2, 2]), torch.tensor([1, 3, 3]), torch.tensor([0]), torch.tensor([4]))
    out = AngularLoss(reducer=DoNothingReducer())(embeddings, labels, pairs)["loss"]
    expected = hand_pair_losses(embeddings, labels, 40)
    assert out["indices"][0].tolist() == [0, 2, 2]
    torch.testing.assert_close(
        out["losses"].flatten(),
        torch.tensor([expected[(0, 1)], expected[(2, 3)], expected[(2, 3)]], dtype=torch.float64),
    )


def test_average_angle_statistic():
    embeddings, labels = h.tiny_batch()
    x = [unit(v) for v in embeddings.tolist()]
    angles = []
    for a, p, same in h.tiny_pairs(labels.tolist()):
        for n in range(len(x)) if same else []:
            if labels[n] != labels[a]:
                center = [(xa + xp) / 2 for xa, xp in zip(x[a], x[p])]
                angles.append(math.atan(math.dist(x[a], x[p]) / (2 * math.dist(x[n], center))))
    loss_fn = AngularLoss(collect_stats=True)
    loss_fn(embeddings, labels)
    assert loss_fn.average_angle == pytest.approx(math.degrees(sum(angles) / len(angles)), rel=1e-9)


class OnUnitSphere(torch.nn.Module):
    """PML 2.9 leaves the negatives unnormalized in this loss (its docs and the paper use unit
    vectors), so both are compared on unit-norm inputs, where the two formulas agree."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None):
        ref_emb = None if ref_emb is None else F.normalize(ref_emb)
        return self.loss(
            F.normalize(embeddings), labels, indices_tuple, ref_emb=ref_emb, ref_labels=ref_labels
        )


def assert_matches_pml(dtype, components=None, indices=None, with_ref=False, **kwargs):
    ours, theirs = h.build_pair(AngularLoss, components, **kwargs)
    embeddings, labels = h.data(dtype)
    ref = h.ref_data(dtype) if with_ref else None
    indices_tuple = None if indices is None else indices(labels, None if ref is None else ref[1])
    our_value, our_grad, our_ref_grad = h.value_and_grads(
        OnUnitSphere(ours), embeddings, labels, indices_tuple, ref
    )
    pml_value, pml_grad, pml_ref_grad = h.value_and_grads(
        OnUnitSphere(theirs), embeddings, labels, indices_tuple, ref
    )
    assert our_value.dtype == dtype and our_value > 0
    assert_close(our_value, pml_value, dtype, scale=10)
    assert_close(our_grad, pml_grad, dtype, scale=10)
    if with_ref:
        assert_close(our_ref_grad, pml_ref_grad, dtype, scale=10)


RECIPES = [
    lambda lib: {},
    lambda lib: {"reducer": lib.reducers.SumReducer()},
    lambda lib: {"reducer": lib.reducers.ThresholdReducer(low=1.0)},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    assert_matches_pml(dtype, recipe, with_ref=with_ref, alpha=48)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    assert_matches_pml(dtype, indices=indices, with_ref=with_ref, alpha=35)


def test_per_anchor_reducer_averages_each_anchors_pairs():
    # PML 2.9's PerAnchorReducer cannot take this loss's (pairs, 1)-shaped losses; ours are 1-D.
    embeddings, labels = h.data()
    per_pair = unreduced(AngularLoss(reducer=DoNothingReducer()), embeddings, labels)
    anchors = sorted({a for a, _ in per_pair})
    per_anchor = [
        sum(v for (a, _), v in per_pair.items() if a == i) / sum(a == i for a, _ in per_pair)
        for i in anchors
    ]
    got = AngularLoss(reducer=PerAnchorReducer())(embeddings, labels)
    assert got.item() == pytest.approx(sum(per_anchor) / len(embeddings), rel=1e-12)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(AngularLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: AngularLoss(alpha=45))
    h.assert_float32_agrees_with_float64(
        lambda: AngularLoss(), indices=h.mined_pairs, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: AngularLoss(), atol=5e-2)


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: AngularLoss(), h.mined_triplets)


def test_pair_without_negatives_contributes_zero():
    embeddings, labels = h.tiny_batch()
    same_class = torch.zeros_like(labels)
    h.assert_zero_loss_with_gradient(AngularLoss(), embeddings, same_class)


@pytest.mark.parametrize(
    "distance",
    [
        CosineSimilarity(),
        LpDistance(power=2),
        LpDistance(p=1),
        LpDistance(normalize_embeddings=False),
    ],
)
def test_other_distances_are_rejected(distance):
    with pytest.raises(ValueError, match=r"AngularLoss needs LpDistance\(p=2, power=1"):
        AngularLoss(distance=distance)


def test_labels_are_required_even_with_mined_tuples():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="needs labels"):
        AngularLoss()(embeddings, None, h.mined_pairs(labels))
