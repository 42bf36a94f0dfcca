import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.losses import TripletMarginLoss
from metric_runner.reducers import DoNothingReducer, MeanReducer
from tests.losses import tuple_loss_helpers as h


def hand_triplet_losses(embeddings, labels, margin, swap=False, ref=None, similarity=False):
    """{(a, p, n): loss} over every valid triplet, written out."""
    ref_emb, ref_labels = (embeddings, labels) if ref is None else ref
    if similarity:
        closeness = lambda x, y: float(x @ y)  # noqa: E731
    else:
        closeness = lambda x, y: -math.dist(x.tolist(), y.tolist())  # noqa: E731
    losses = {}
    for a, p, same in h.tiny_pairs(labels.tolist(), h.as_list(None if ref is None else ref_labels)):
        if not same:
            continue
        for n in range(len(ref_labels)):
            if ref_labels[n] == labels[a]:
                continue
            c_ap = closeness(embeddings[a], ref_emb[p])
            c_an = closeness(embeddings[a], ref_emb[n])
            if swap:
                c_an = max(c_an, closeness(ref_emb[p], ref_emb[n]))
            losses[(a, p, n)] = max(c_an - c_ap + margin, 0)
    return losses


def test_hand_computed_value_over_all_triplets():
    embeddings, labels = h.tiny_batch()
    losses = hand_triplet_losses(embeddings, labels, margin=0.5)
    nonzero = [v for v in losses.values() if v > 0]
    loss_fn = TripletMarginLoss(margin=0.5)
    assert loss_fn(embeddings, labels).item() == pytest.approx(
        sum(nonzero) / len(nonzero), rel=1e-12
    )


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("similarity", [False, True])
def test_unreduced_losses_and_indices_of_every_triplet(swap, similarity):
    embeddings, labels = h.tiny_batch()
    expected = hand_triplet_losses(embeddings, labels, 0.5, swap=swap, similarity=similarity)
    distance = CosineSimilarity() if similarity else None
    loss_fn = TripletMarginLoss(
        margin=0.5, swap=swap, distance=distance, reducer=DoNothingReducer()
    )
    out = loss_fn(embeddings, labels)["loss"]
    assert out["reduction_type"] == "triplet"
    got = dict(zip(zip(*[x.tolist() for x in out["indices"]]), out["losses"].tolist()))
    assert got.keys() == expected.keys()
    for triplet, value in expected.items():
        assert got[triplet] == pytest.approx(value, abs=1e-12), triplet


def test_swap_with_a_reference_set_uses_reference_to_reference_distances():
    # PML 2.9 indexes its query×reference matrix with (p, n) here, mixing up the two sets;
    # we follow the paper: d(p, n) between the two reference samples.
    embeddings, labels = h.tiny_batch()
    ref_emb, ref_labels = embeddings.flip(0)[:4].roll(1, dims=1), torch.tensor([2, 1, 1, 0])
    expected = hand_triplet_losses(embeddings, labels, 0.3, swap=True, ref=(ref_emb, ref_labels))
    loss_fn = TripletMarginLoss(margin=0.3, swap=True, reducer=DoNothingReducer())
    out = loss_fn(embeddings, labels, ref_emb=ref_emb, ref_labels=ref_labels)["loss"]
    got = dict(zip(zip(*[x.tolist() for x in out["indices"]]), out["losses"].tolist()))
    assert got == pytest.approx(expected, abs=1e-12)


def test_smooth_loss_is_softplus_of_the_violation():
    embeddings, labels = h.tiny_batch()
    triplets = (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([4, 0]))
    loss_fn = TripletMarginLoss(margin=0.2, smooth_loss=True, reducer=MeanReducer())
    dist = torch.cdist(embeddings, embeddings)
    a, p, n = triplets
    expected = torch.log1p(torch.exp(dist[a, p] - dist[a, n] + 0.2)).mean()
    torch.testing.assert_close(loss_fn(embeddings, labels, triplets), expected)


def test_triplets_per_anchor_draws_that_many_valid_triplets_per_anchor():
    torch.manual_seed(0)
    embeddings, labels = h.data()
    loss_fn = TripletMarginLoss(margin=0.3, triplets_per_anchor=3, reducer=DoNothingReducer())
    out = loss_fn(embeddings, labels)["loss"]
    a, p, n = out["indices"]
    assert torch.bincount(a, minlength=len(labels)).tolist() == [3] * len(labels)
    assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[a] != labels[n]).all()
    unit = torch.nn.functional.normalize(embeddings)
    dist = torch.cdist(unit, unit)
    torch.testing.assert_close(out["losses"], torch.relu(dist[a, p] - dist[a, n] + 0.3))


def test_mined_pairs_become_every_triplet_sharing_an_anchor():
    embeddings, labels = h.tiny_batch()
    pairs = (
        torch.tensor([0, 2, 2]),
        torch.tensor([1, 3, 3]),
        torch.tensor([2, 2, 1]),
        torch.tensor([4, 0, 4]),
    )
    out = TripletMarginLoss(reducer=DoNothingReducer())(embeddings, labels, pairs)["loss"]
    got = sorted(zip(*[x.tolist() for x in out["indices"]]))
    assert got == [(2, 3, 0), (2, 3, 0), (2, 3, 4), (2, 3, 4)]


def test_stats_describe_the_triplets():
    embeddings, labels = h.tiny_batch()
    loss_fn = TripletMarginLoss(collect_stats=True)
    loss_fn(embeddings, labels)
    dist = torch.cdist(embeddings, embeddings)
    triplets = hand_triplet_losses(embeddings, labels, 0).keys()
    ap = [dist[a, p].item() for a, p, _ in triplets]
    an = [dist[a, n].item() for a, _, n in triplets]
    assert loss_fn.pos_pair_dist == pytest.approx(sum(ap) / len(ap))
    assert loss_fn.neg_pair_dist == pytest.approx(sum(an) / len(an))
    assert loss_fn.avg_triplet_margin == pytest.approx((sum(an) - sum(ap)) / len(ap))


RECIPES = [
    lambda lib: {},
    lambda lib: {
        "distance": lib.distances.CosineSimilarity(),
        "reducer": lib.reducers.MeanReducer(),
    },
    lambda lib: {
        "distance": lib.distances.LpDistance(power=2),
        "reducer": lib.reducers.SumReducer(),
    },
    lambda lib: {"reducer": lib.reducers.ClassWeightedReducer(torch.linspace(0.5, 2, 6))},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("options", [{}, {"smooth_loss": True}, {"swap": True}])
def test_matches_pml(pml, dtype, recipe, options):
    h.assert_matches_pml(TripletMarginLoss, dtype, recipe, margin=0.3, **options)


@pytest.mark.parametrize("recipe", RECIPES[:2])
def test_matches_pml_with_a_reference_set(pml, dtype, recipe):
    h.assert_matches_pml(TripletMarginLoss, dtype, recipe, with_ref=True, margin=0.3)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(TripletMarginLoss, dtype, indices=indices, with_ref=with_ref, margin=0.3)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(TripletMarginLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: TripletMarginLoss(margin=0.3, swap=True))
    h.assert_float32_agrees_with_float64(
        lambda: TripletMarginLoss(margin=0.3), indices=h.mined_pairs, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: TripletMarginLoss(margin=0.3))
    h.assert_float16_close_to_float32(lambda: TripletMarginLoss(margin=0.3, smooth_loss=True))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: TripletMarginLoss(margin=0.3))
    h.assert_labels_on_cpu_are_moved(lambda: TripletMarginLoss(margin=0.3), h.mined_pairs)


def test_zero_loss_without_triplets():
    embeddings, labels = h.tiny_batch()
    h.assert_zero_loss_with_gradient(TripletMarginLoss(), embeddings, torch.arange(5))
    h.assert_zero_loss_with_gradient(
        TripletMarginLoss(triplets_per_anchor=2), embeddings, torch.zeros(5)
    )
    no_triplets = tuple(torch.empty(0, dtype=torch.long) for _ in range(3))
    h.assert_zero_loss_with_gradient(TripletMarginLoss(), embeddings, labels, no_triplets)


def test_bad_triplets_per_anchor_is_rejected():
    with pytest.raises(ValueError, match="triplets_per_anchor"):
        TripletMarginLoss(triplets_per_anchor="some")
