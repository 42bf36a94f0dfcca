import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.losses import TripletMarginLoss
from metric_runner.reducers import AvgNonZeroReducer, DoNothingReducer, MeanReducer
from metric_runner.utils import loss_and_miner_utils as lmu
from tests.helpers import assert_close
from tests.losses import tuple_loss_helpers as h


def hand_triplet_losses(
    embeddings, labels, margin, swap=False, ref=None, similarity=False, smooth=False
):
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
            violation = c_an - c_ap + margin
            losses[(a, p, n)] = math.log1p(math.exp(violation)) if smooth else max(violation, 0)
    return losses


def assert_matches_pml_with_unequal_class_sizes(cls, dtype, recipe, **kwargs):
    """Value and gradient equal PML's on h.data() without its first sample (one class short)."""
    ours, theirs = h.build_pair(cls, recipe, **kwargs)
    embeddings, labels = h.data(dtype)
    embeddings, labels = embeddings[1:], labels[1:]
    our_value, our_grad, _ = h.value_and_grads(ours, embeddings, labels)
    pml_value, pml_grad, _ = h.value_and_grads(theirs, embeddings, labels)
    assert our_value.abs() > 0
    assert_close(our_value, pml_value, dtype, scale=10)
    assert_close(our_grad, pml_grad, dtype, scale=10)


def unreduced(out):
    """{(a, p, n): loss} of a DoNothingReducer output."""
    return dict(zip(zip(*[x.tolist() for x in out["indices"]]), out["losses"].tolist()))


# Three classes of two, shuffled: every class has the same size, which the loss lays out
# without index lists (the tiny batch of tuple_loss_helpers has unequal classes).
EQUAL_SIZE_LABELS = torch.tensor([2, 0, 1, 0, 2, 1])


def equal_size_batch():
    generator = torch.Generator().manual_seed(3)
    return torch.randn(6, 3, generator=generator, dtype=torch.float64), EQUAL_SIZE_LABELS


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


@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("similarity", [False, True])
def test_unreduced_losses_of_every_triplet_with_equal_class_sizes(similarity, smooth):
    embeddings, labels = equal_size_batch()
    unit = torch.nn.functional.normalize(embeddings)
    expected = hand_triplet_losses(unit, labels, 0.4, similarity=similarity, smooth=smooth)
    loss_fn = TripletMarginLoss(
        margin=0.4,
        smooth_loss=smooth,
        distance=CosineSimilarity() if similarity else None,
        reducer=DoNothingReducer(),
    )
    out = loss_fn(embeddings, labels)["loss"]
    assert len(out["losses"]) == len(expected) == 6 * 1 * 4
    assert unreduced(out) == pytest.approx(expected, abs=1e-12)
    nonzero = [v for v in expected.values() if v > 0]
    loss_fn.reducer = AvgNonZeroReducer()
    assert loss_fn(embeddings, labels).item() == pytest.approx(sum(nonzero) / len(nonzero))


@pytest.mark.parametrize("batch", [equal_size_batch, h.tiny_batch])
def test_reducers_get_lazy_indices_of_all_triplets(batch):
    class RecordIndices(AvgNonZeroReducer):
        def triplet_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
            self.indices = loss_indices
            return super().triplet_reduction(losses, loss_indices, embeddings, labels, **kwargs)

    embeddings, labels = batch()
    loss_fn = TripletMarginLoss(reducer=RecordIndices())
    loss_fn(embeddings, labels)
    lazy = loss_fn.reducer.indices
    assert isinstance(lazy, lmu.LazyIndexTuple) and len(lazy) == 3
    a, p, n = lazy
    eager = lmu.get_all_triplets_indices(labels)
    assert lazy.lengths == (len(eager[0]),) * 3
    assert sorted(zip(a.tolist(), p.tolist(), n.tolist())) == sorted(
        zip(*[x.tolist() for x in eager])
    )


@pytest.mark.parametrize("drop_first", [False, True])
def test_unreduced_output_lists_the_triplets_in_pml_order(pml, drop_first):
    embeddings, labels = h.data()
    embeddings, labels = (embeddings[1:], labels[1:]) if drop_first else (embeddings, labels)
    ours, theirs = h.build_pair(
        TripletMarginLoss, lambda lib: {"reducer": lib.reducers.DoNothingReducer()}
    )
    our_out, pml_out = ours(embeddings, labels)["loss"], theirs(embeddings, labels)["loss"]
    assert set(our_out) == set(pml_out) and isinstance(our_out["indices"], tuple)
    for got, expected in zip(our_out["indices"], pml_out["indices"]):
        assert torch.equal(got, expected)
    assert_close(our_out["losses"], pml_out["losses"], torch.float64)


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


@pytest.mark.parametrize("batch", [h.tiny_batch, equal_size_batch])
def test_stats_describe_the_triplets(batch):
    embeddings, labels = batch()
    embeddings = torch.nn.functional.normalize(embeddings)
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


@pytest.mark.parametrize("recipe", RECIPES[:3])
def test_matches_pml_with_unequal_class_sizes(pml, dtype, recipe):
    assert_matches_pml_with_unequal_class_sizes(TripletMarginLoss, dtype, recipe, margin=0.3)


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
