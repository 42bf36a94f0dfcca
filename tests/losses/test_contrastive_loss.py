import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.losses import ContrastiveLoss
from metric_runner.reducers import DoNothingReducer, MeanReducer
from metric_runner.utils import loss_and_miner_utils as lmu
from tests.helpers import assert_close
from tests.losses import tuple_loss_helpers as h


def mean_of_nonzero(values):
    nonzero = [v for v in values if v > 0]
    return sum(nonzero) / len(nonzero) if nonzero else 0.0


def test_hand_computed_value_with_a_distance():
    embeddings, labels = h.tiny_batch()
    pos, neg = [], []
    for i, j, same in h.tiny_pairs(labels.tolist()):
        d = math.dist(embeddings[i].tolist(), embeddings[j].tolist())
        if same:
            pos.append(max(d - 0.1, 0))
        else:
            neg.append(max(1.5 - d, 0))
    loss_fn = ContrastiveLoss(pos_margin=0.1, neg_margin=1.5)
    expected = mean_of_nonzero(pos) + mean_of_nonzero(neg)
    assert loss_fn(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)


def test_hand_computed_value_with_a_similarity_flips_the_margins():
    # For a similarity s: positives pay [pos_margin - s]_+, negatives [s - neg_margin]_+.
    embeddings, labels = h.tiny_batch()
    pos, neg = [], []
    for i, j, same in h.tiny_pairs(labels.tolist()):
        s = float(embeddings[i] @ embeddings[j])
        if same:
            pos.append(max(0.9 - s, 0))
        else:
            neg.append(max(s - 0.2, 0))
    loss_fn = ContrastiveLoss(
        pos_margin=0.9, neg_margin=0.2, distance=CosineSimilarity(), reducer=MeanReducer()
    )
    expected = sum(pos) / len(pos) + sum(neg) / len(neg)
    assert loss_fn(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)


def test_unreduced_losses_and_indices_cover_every_pair_once():
    embeddings, labels = h.tiny_batch()
    out = ContrastiveLoss(neg_margin=1.5, reducer=DoNothingReducer())(embeddings, labels)
    assert set(out) == {"pos_loss", "neg_loss"}
    assert out["pos_loss"]["reduction_type"] == "pos_pair"
    assert out["neg_loss"]["reduction_type"] == "neg_pair"
    pairs = h.tiny_pairs(labels.tolist())
    a1, p = out["pos_loss"]["indices"]
    a2, n = out["neg_loss"]["indices"]
    assert sorted(zip(a1.tolist(), p.tolist())) == [(i, j) for i, j, s in pairs if s]
    assert sorted(zip(a2.tolist(), n.tolist())) == [(i, j) for i, j, s in pairs if not s]
    dist = torch.cdist(embeddings, embeddings)
    torch.testing.assert_close(out["neg_loss"]["losses"], torch.relu(1.5 - dist[a2, n]))


# Three classes of two, shuffled: every class has the same size, which the loss lays out
# without index lists (the tiny batch of tuple_loss_helpers has unequal classes).
EQUAL_SIZE_LABELS = torch.tensor([2, 0, 1, 0, 2, 1])


def equal_size_batch():
    generator = torch.Generator().manual_seed(3)
    return torch.randn(6, 3, generator=generator, dtype=torch.float64), EQUAL_SIZE_LABELS


@pytest.mark.parametrize("similarity", [False, True])
def test_unreduced_losses_of_every_pair_with_equal_class_sizes(similarity):
    embeddings, labels = equal_size_batch()
    unit = torch.nn.functional.normalize(embeddings)
    expected = {"pos_loss": {}, "neg_loss": {}}
    for i, j, same in h.tiny_pairs(labels.tolist()):
        if similarity:  # positives pay [0.8 - s]_+, negatives [s - 0.1]_+
            s = float(unit[i] @ unit[j])
            loss = max(0.8 - s, 0) if same else max(s - 0.1, 0)
        else:
            d = math.dist(unit[i].tolist(), unit[j].tolist())
            loss = max(d - 0.2, 0) if same else max(1.3 - d, 0)
        expected["pos_loss" if same else "neg_loss"][(i, j)] = loss
    margins = (0.8, 0.1) if similarity else (0.2, 1.3)

    def loss_fn(reducer):
        distance = CosineSimilarity() if similarity else None
        return ContrastiveLoss(*margins, distance=distance, reducer=reducer)

    out = loss_fn(DoNothingReducer())(embeddings, labels)
    for name, pairs in expected.items():
        indices, losses = out[name]["indices"], out[name]["losses"]
        assert len(losses) == len(pairs)
        assert dict(zip(zip(*[x.tolist() for x in indices]), losses.tolist())) == pytest.approx(
            pairs, abs=1e-12
        )
    expected_mean = sum(sum(p.values()) / len(p) for p in expected.values())
    assert loss_fn(MeanReducer())(embeddings, labels).item() == pytest.approx(expected_mean)


@pytest.mark.parametrize("batch", [equal_size_batch, h.tiny_batch])
def test_reducers_get_lazy_indices_of_all_pairs(batch):
    class RecordIndices(MeanReducer):
        def pos_pair_reduction(self, losses, loss_indices, embeddings, labels):
            self.indices = loss_indices
            return super().pos_pair_reduction(losses, loss_indices, embeddings, labels)

        neg_pair_reduction = pos_pair_reduction

    embeddings, labels = batch()
    loss_fn = ContrastiveLoss(reducer=RecordIndices())
    loss_fn(embeddings, labels)
    eager = lmu.get_all_pairs_indices(labels)
    for name, expected in (("pos_loss", eager[:2]), ("neg_loss", eager[2:])):
        lazy = loss_fn.reducer.reducers[name].indices
        assert isinstance(lazy, lmu.LazyIndexTuple) and lazy.lengths == (len(expected[0]),) * 2
        assert sorted(zip(*[x.tolist() for x in lazy])) == sorted(
            zip(*[x.tolist() for x in expected])
        )


@pytest.mark.parametrize("drop_first", [False, True])
def test_unreduced_output_lists_the_pairs_in_pml_order(pml, drop_first):
    embeddings, labels = h.data()
    embeddings, labels = (embeddings[1:], labels[1:]) if drop_first else (embeddings, labels)
    ours, theirs = h.build_pair(
        ContrastiveLoss, lambda lib: {"reducer": lib.reducers.DoNothingReducer()}, neg_margin=2
    )
    our_out, pml_out = ours(embeddings, labels), theirs(embeddings, labels)
    for name in ("pos_loss", "neg_loss"):
        assert set(our_out[name]) == set(pml_out[name])
        assert isinstance(our_out[name]["indices"], tuple)
        for got, expected in zip(our_out[name]["indices"], pml_out[name]["indices"]):
            assert torch.equal(got, expected)
        assert_close(our_out[name]["losses"], pml_out[name]["losses"], torch.float64)


def test_mined_triplets_become_their_pairs_with_repeats():
    embeddings, labels = h.tiny_batch()
    triplets = (torch.tensor([0, 0, 2]), torch.tensor([1, 1, 3]), torch.tensor([2, 4, 0]))
    out = ContrastiveLoss(reducer=DoNothingReducer())(embeddings, labels, triplets)
    assert out["pos_loss"]["indices"][0].tolist() == [0, 0, 2]
    assert out["neg_loss"]["indices"][1].tolist() == [2, 4, 0]


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
    lambda lib: {"reducer": lib.reducers.PerAnchorReducer()},
    lambda lib: {"reducer": lib.reducers.ClassWeightedReducer(torch.linspace(0.5, 2, 6))},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    margins = {"pos_margin": 0.2, "neg_margin": 0.9}
    if "CosineSimilarity" in repr(recipe(h.library("metric_runner"))):
        margins = {"pos_margin": 0.8, "neg_margin": 0.3}
    h.assert_matches_pml(ContrastiveLoss, dtype, recipe, with_ref=with_ref, **margins)


@pytest.mark.parametrize("recipe", RECIPES[:4])
def test_matches_pml_with_unequal_class_sizes(pml, dtype, recipe):
    # h.data() without its first sample: one class is a sample short.
    ours, theirs = h.build_pair(ContrastiveLoss, recipe, pos_margin=0.2, neg_margin=0.9)
    if "CosineSimilarity" in repr(recipe(h.library("metric_runner"))):
        ours, theirs = h.build_pair(ContrastiveLoss, recipe, pos_margin=0.8, neg_margin=0.3)
    embeddings, labels = h.data(dtype)
    our_value, our_grad, _ = h.value_and_grads(ours, embeddings[1:], labels[1:])
    pml_value, pml_grad, _ = h.value_and_grads(theirs, embeddings[1:], labels[1:])
    assert our_value.abs() > 0
    assert_close(our_value, pml_value, dtype, scale=10)
    assert_close(our_grad, pml_grad, dtype, scale=10)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(
        ContrastiveLoss, dtype, indices=indices, with_ref=with_ref, pos_margin=0.1, neg_margin=0.9
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(ContrastiveLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: ContrastiveLoss(neg_margin=0.9))
    h.assert_float32_agrees_with_float64(
        lambda: ContrastiveLoss(pos_margin=0.1, neg_margin=0.9),
        indices=h.mined_pairs,
        with_ref=True,
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: ContrastiveLoss(neg_margin=0.9))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: ContrastiveLoss(neg_margin=0.9), h.mined_triplets)


def test_zero_loss_when_every_pair_is_satisfied():
    embeddings, labels = h.tiny_batch()
    far = LpDistance(normalize_embeddings=False)
    h.assert_zero_loss_with_gradient(
        ContrastiveLoss(pos_margin=5, neg_margin=0, distance=far), embeddings, labels
    )


def test_bad_indices_tuple_is_rejected():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="4-tuple"):
        ContrastiveLoss()(embeddings, labels, (labels, labels))


def test_all_pairs_of_masks_give_the_same_loss_and_gradient_as_index_lists():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2])
    ref_labels = torch.tensor([0, 1, 1, 2, 2, 2])
    pos_mask = labels.unsqueeze(1) == ref_labels.unsqueeze(0)
    pos_mask[1, 0] = False  # a removed pair, as CrossBatchMemory's own-copy pairs
    neg_mask = labels.unsqueeze(1) != ref_labels.unsqueeze(0)
    ref = torch.randn(6, 4)
    results = []
    for indices in (
        lmu.all_pairs_of_masks(pos_mask, neg_mask),
        (*torch.where(pos_mask), *torch.where(neg_mask)),
    ):
        emb = torch.randn(5, 4, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        loss = ContrastiveLoss(pos_margin=0.1, neg_margin=0.9)(
            emb, labels, indices, ref, ref_labels
        )
        loss.backward()
        results.append((loss.detach(), emb.grad))
    assert torch.allclose(results[0][0], results[1][0])
    assert torch.allclose(results[0][1], results[1][1])


def reference_hinges(mat, pos_mask, neg_mask, pos_margin, neg_margin, distance):
    """Pick, margin and relu as plain autograd steps."""
    pos = distance.margin(mat[pos_mask], pos_margin).relu()
    neg = distance.margin(neg_margin, mat[neg_mask]).relu()
    return pos, neg


@pytest.mark.parametrize("distance", [LpDistance(), CosineSimilarity()])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_all_pairs_hinges_match_margin_and_relu_exactly(distance, dtype):
    """Values and gradients bit for bit, with entries exactly at either margin (no gradient)
    and a NaN (relu lets its gradient through), through masks and through flat positions."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2])
    ref_labels = torch.tensor([0, 1, 1, 2, 2, 2])
    values = torch.rand(5, 6, generator=generator, dtype=torch.float64) * 1.5
    # Positives at (0, 0) and (3, 2), negatives at (0, 1) and (1, 1): one of each exactly at
    # each margin, whichever hinge direction; a NaN negative at (2, 3).
    values[0, 0], values[3, 2], values[0, 1], values[1, 1] = 0.2, 0.9, 0.9, 0.2
    values[2, 3] = float("nan")
    values = values.to(dtype)
    pos_margin, neg_margin = (0.2, 0.9) if not distance.is_inverted else (0.9, 0.2)
    pairs = lmu.all_pairs_of_labels(labels, ref_labels, self_columns=torch.tensor([1, 5, 2, 4, 3]))
    pos_mask = torch.zeros(5, 6, dtype=torch.bool)
    pos_mask[pairs[0], pairs[1]] = True
    neg_mask = labels.unsqueeze(1) != ref_labels.unsqueeze(0)
    as_positions = lmu.all_pairs_of_masks(pos_mask, neg_mask)
    grads = [torch.randn(len(pairs[i]), generator=generator).to(dtype) for i in (0, 2)]
    mat = values.clone().requires_grad_(True)
    expected = reference_hinges(mat, pos_mask, neg_mask, pos_margin, neg_margin, distance)
    (expected_grad,) = torch.autograd.grad(expected, mat, grads)
    for indices in (pairs, as_positions):
        loss_fn = ContrastiveLoss(pos_margin, neg_margin, distance=distance)
        got = loss_fn.all_pairs_loss(mat, indices)
        pos, neg = got["pos_loss"]["losses"], got["neg_loss"]["losses"]
        assert torch.equal(pos, expected[0]) and torch.equal(
            neg.nan_to_num(), expected[1].nan_to_num()
        )
        (grad,) = torch.autograd.grad((pos, neg), mat, grads)
        assert torch.equal(grad.nan_to_num(), expected_grad.nan_to_num())
        assert torch.equal(grad.isnan(), expected_grad.isnan())


def test_all_pairs_hinges_gradcheck():
    labels = torch.tensor([0, 1, 0, 1])
    mat = torch.rand(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    mat.requires_grad_(True)
    pairs = lmu.all_pairs_of_labels(labels)
    loss_fn = ContrastiveLoss(pos_margin=0.1, neg_margin=1.0)

    def both(m):
        got = loss_fn.all_pairs_loss(m, pairs)
        return got["pos_loss"]["losses"], got["neg_loss"]["losses"]

    assert torch.autograd.gradcheck(both, (mat,))
