import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.losses import LiftedStructureLoss
from metric_runner.reducers import DoNothingReducer
from tests.losses import tuple_loss_helpers as h


def hand_pair_losses(
    embeddings, labels, pairs, neg_margin, pos_margin, ref_emb=None, similarity=False
):
    """[J_ij]_+² / 2 for each positive pair (i, j) of `pairs` = (a1, p, a2, n), where
    J_ij = log Σ exp(neg_margin − d) over the listed negative pairs anchored at i or at j (each
    listed pair once) + d_ij − pos_margin; an empty negative sum counts as 0. Similarities flip
    the signs."""
    x = embeddings.tolist()
    r = x if ref_emb is None else ref_emb.tolist()

    def closeness_terms(u, v, margin, positive):
        if similarity:
            s = sum(a * b for a, b in zip(u, v))
            return margin - s if positive else s - margin
        d = math.dist(u, v)
        return d - margin if positive else margin - d

    a1, p, a2, n = [t.tolist() for t in pairs]
    losses = []
    for i, j in zip(a1, p):
        rows = {i} if ref_emb is not None else {i, j}
        terms = [closeness_terms(x[k], r[m], neg_margin, False) for k, m in zip(a2, n) if k in rows]
        neg_lse = math.log(sum(math.exp(t) for t in terms)) if terms else 0.0
        J = neg_lse + closeness_terms(x[i], r[j], pos_margin, True)
        losses.append(max(J, 0) ** 2 / 2)
    return losses


def all_pairs(labels, ref_labels=None):
    pairs = h.tiny_pairs(labels.tolist(), h.as_list(ref_labels))
    pos = [(i, j) for i, j, same in pairs if same]
    neg = [(i, j) for i, j, same in pairs if not same]
    return tuple(torch.tensor(x) for x in (*zip(*pos), *zip(*neg)))


@pytest.mark.parametrize("similarity", [False, True])
def test_hand_computed_value_over_all_pairs(similarity):
    embeddings, labels = h.tiny_batch()
    neg_margin, pos_margin = (0.2, 0.9) if similarity else (1.3, 0.2)
    expected = hand_pair_losses(
        embeddings, labels, all_pairs(labels), neg_margin, pos_margin, similarity=similarity
    )
    distance = CosineSimilarity() if similarity else None
    loss_fn = LiftedStructureLoss(neg_margin=neg_margin, pos_margin=pos_margin, distance=distance)
    assert loss_fn(embeddings, labels).item() == pytest.approx(
        sum(expected) / len(expected), rel=1e-12
    )


def test_mined_pairs_use_listed_negatives_of_both_members_with_repeats():
    embeddings, labels = h.tiny_batch()
    # (2, 2): i's negatives once. (0, 1): row 1 has no negative pair, row 0 two copies of (0, 4).
    # (3, 2): negatives of rows 3 and 2. (1, 0) again, to check repeats of positive pairs.
    pairs = (
        torch.tensor([2, 0, 3, 0]),
        torch.tensor([2, 1, 2, 1]),
        torch.tensor([0, 0, 2, 3, 3]),
        torch.tensor([4, 4, 1, 0, 4]),
    )
    expected = hand_pair_losses(embeddings, labels, pairs, 1.1, 0.1)
    out = LiftedStructureLoss(neg_margin=1.1, pos_margin=0.1, reducer=DoNothingReducer())(
        embeddings, labels, pairs
    )
    out = out["loss"]
    assert out["reduction_type"] == "pos_pair"
    assert [t.tolist() for t in out["indices"]] == [[2, 0, 3, 0], [2, 1, 2, 1]]
    torch.testing.assert_close(out["losses"], torch.tensor(expected, dtype=torch.float64))


def test_pair_without_negatives_pays_its_distance():
    embeddings, labels = h.tiny_batch()
    pairs = (
        torch.tensor([0]),
        torch.tensor([1]),
        torch.tensor([], dtype=torch.long),
        torch.tensor([], dtype=torch.long),
    )
    got = LiftedStructureLoss(pos_margin=0.1)(embeddings, labels, pairs)
    assert got.item() == pytest.approx(
        max(math.dist([1.0, 0.0], [0.8, 0.6]) - 0.1, 0) ** 2 / 2, rel=1e-12
    )


def test_reference_set_uses_the_anchors_negatives():
    # PML 2.9 looks up the positive's negatives in the query row with the positive's reference
    # index (another sample); a reference sample anchors no negative pair, so only i's count.
    embeddings, labels = h.tiny_batch()
    ref_emb, ref_labels = embeddings.flip(0)[:4].roll(1, dims=1), torch.tensor([2, 1, 1, 0])
    pairs = all_pairs(labels, ref_labels)
    expected = hand_pair_losses(embeddings, labels, pairs, 1.2, 0.0, ref_emb=ref_emb)
    loss_fn = LiftedStructureLoss(neg_margin=1.2, reducer=DoNothingReducer())
    out = loss_fn(embeddings, labels, ref_emb=ref_emb, ref_labels=ref_labels)["loss"]
    assert [t.tolist() for t in out["indices"]] == [t.tolist() for t in pairs[:2]]
    torch.testing.assert_close(out["losses"], torch.tensor(expected, dtype=torch.float64))


RECIPES = [
    lambda lib: {},
    lambda lib: {
        "distance": lib.distances.CosineSimilarity(),
        "reducer": lib.reducers.SumReducer(),
    },
    lambda lib: {
        "distance": lib.distances.LpDistance(power=2),
        "reducer": lib.reducers.AvgNonZeroReducer(),
    },
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("indices", [None, h.mined_pairs, h.mined_triplets])
def test_matches_pml(pml, dtype, recipe, indices):
    h.assert_matches_pml(
        LiftedStructureLoss, dtype, recipe, indices=indices, neg_margin=0.7, pos_margin=0.1
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(LiftedStructureLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: LiftedStructureLoss())
    h.assert_float32_agrees_with_float64(
        lambda: LiftedStructureLoss(neg_margin=0.5), indices=h.mined_pairs, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: LiftedStructureLoss(), atol=5e-2)


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: LiftedStructureLoss(), h.mined_triplets)


def test_zero_loss_when_every_pair_is_satisfied():
    embeddings = torch.tensor(
        [[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], dtype=torch.float64
    )
    h.assert_zero_loss_with_gradient(
        LiftedStructureLoss(neg_margin=0.1), embeddings, torch.tensor([0, 0, 1, 1])
    )


def test_bad_indices_tuple_is_rejected():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="4-tuple"):
        LiftedStructureLoss()(embeddings, labels, (labels, labels))
