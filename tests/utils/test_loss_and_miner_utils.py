import itertools
import math

import pytest
import torch

from metric_runner.utils import loss_and_miner_utils as lmu

LABELS = torch.tensor([0, 0, 1, 1, 2])
REF_LABELS = torch.tensor([1, 0, 2, 2])


def t(*values):
    return torch.tensor(values, dtype=torch.long)


def as_pairs(*tensors):
    return list(zip(*[x.tolist() for x in tensors]))


def hand_pairs(labels, ref_labels=None):
    """(positive pairs, negative pairs) in row-major order; no self pairs within one set."""
    same_set = ref_labels is None
    ref = labels if same_set else ref_labels
    pos, neg = [], []
    for i, j in itertools.product(range(len(labels)), range(len(ref))):
        if same_set and i == j:
            continue
        (pos if labels[i] == ref[j] else neg).append((i, j))
    return pos, neg


def hand_triplets(labels, ref_labels=None):
    pos, neg = hand_pairs(labels, ref_labels)
    return [(a, p, n) for a, p in pos for a2, n in neg if a2 == a]


@pytest.mark.parametrize("ref_labels", [None, REF_LABELS])
def test_all_pairs_by_hand(ref_labels):
    a1, p, a2, n = lmu.get_all_pairs_indices(LABELS, ref_labels)
    pos, neg = hand_pairs(LABELS.tolist(), None if ref_labels is None else ref_labels.tolist())
    assert as_pairs(a1, p) == pos and as_pairs(a2, n) == neg
    if ref_labels is None:
        assert pos == [(0, 1), (1, 0), (2, 3), (3, 2)]
    else:
        assert pos == [(0, 1), (1, 1), (2, 0), (3, 0), (4, 2), (4, 3)]


@pytest.mark.parametrize("ref_labels", [None, REF_LABELS])
def test_all_triplets_by_hand(ref_labels):
    a, p, n = lmu.get_all_triplets_indices(LABELS, ref_labels)
    ref = None if ref_labels is None else ref_labels.tolist()
    assert as_pairs(a, p, n) == hand_triplets(LABELS.tolist(), ref)
    assert len(a) == (4 * 3 if ref_labels is None else 2 * 3 + 2 * 3 + 2 * 2)


def test_triplets_of_pos_pairs_lay_out_the_pair_by_reference_matrix():
    pos_mask, neg_mask = lmu.get_matches_and_diffs(LABELS)
    a, p, pair_idx, n, flat_idx = lmu.triplets_of_pos_pairs(pos_mask, neg_mask)
    assert as_pairs(a, p) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert pair_idx.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert n.tolist() == [2, 3, 4, 2, 3, 4, 0, 1, 4, 0, 1, 4]
    assert flat_idx.tolist() == (pair_idx * 5 + n).tolist()


def test_convert_to_pairs():
    assert as_pairs(*lmu.convert_to_pairs(None, LABELS)) == as_pairs(
        *lmu.get_all_pairs_indices(LABELS)
    )
    pairs = (t(0), t(1), t(0, 0), t(2, 4))
    assert lmu.convert_to_pairs(pairs, LABELS) is pairs
    a1, p, a2, n = lmu.convert_to_pairs((t(0, 2), t(1, 3), t(4, 0)), LABELS)
    assert as_pairs(a1, p) == [(0, 1), (2, 3)] and as_pairs(a2, n) == [(0, 4), (2, 0)]
    with pytest.raises(ValueError, match="4-tuple"):
        lmu.convert_to_pairs((t(0), t(1)), LABELS)


def test_convert_to_triplets():
    all_triplets = lmu.convert_to_triplets(None, LABELS, t_per_anchor="all")
    assert as_pairs(*all_triplets) == hand_triplets(LABELS.tolist())
    triplets = (t(0), t(1), t(2))
    assert lmu.convert_to_triplets(triplets, LABELS) is triplets
    pairs = (t(0, 2, 0), t(1, 3, 1), t(0, 0, 2, 1), t(2, 4, 0, 4))
    # Each positive pair joins every negative pair of its anchor, in positive-pair order.
    assert as_pairs(*lmu.convert_to_triplets(pairs, LABELS)) == [
        (0, 1, 2),
        (0, 1, 4),
        (2, 3, 0),
        (0, 1, 2),
        (0, 1, 4),
    ]
    empty = lmu.convert_to_triplets((t(0), t(1), t(), t()), LABELS)
    assert all(len(x) == 0 for x in empty)
    with pytest.raises(ValueError, match="triplet 3-tuple"):
        lmu.convert_to_triplets((t(0), t(1)), LABELS)


def test_pairs_to_triplets_matches_an_explicit_join():
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        a1, p = torch.randint(0, 6, (2, 12), generator=generator)
        a2, n = torch.randint(0, 6, (2, 9), generator=generator)
        expected = [(a, pp, nn) for a, pp in as_pairs(a1, p) for b, nn in as_pairs(a2, n) if a == b]
        assert as_pairs(*lmu.pairs_to_triplets(a1, p, a2, n)) == expected


def test_convert_to_weights_counts_appearances():
    labels = t(0, 0, 1, 1, 2, 2)
    triplets = (t(0, 1, 1), t(2, 3, 3), t(4, 5, 0))
    weights = lmu.convert_to_weights(triplets, labels, torch.float64)
    # Appearances: 0 twice, 1 twice, 2 once, 3 twice, 4 once, 5 once.
    assert weights.dtype == torch.float64
    assert weights.tolist() == [1, 1, 0.5, 1, 0.5, 0.5]
    # With a reference set only anchors index the batch.
    assert lmu.convert_to_weights(triplets, labels, torch.float32, using_ref=True).tolist() == [
        0.5,
        1,
        0,
        0,
        0,
        0,
    ]
    pairs = (t(0, 0, 1), t(1, 2, 3), t(0, 2, 2), t(4, 5, 0))
    assert lmu.convert_to_weights(pairs, labels, torch.float64, using_ref=True).tolist() == [
        1,
        1 / 3,
        2 / 3,
        0,
        0,
        0,
    ]
    assert lmu.convert_to_weights(None, labels, torch.float32).tolist() == [1] * 6
    assert lmu.convert_to_weights((t(), t(), t()), labels, torch.float32).tolist() == [1] * 6


def direct_logsumexp(x, mask, add_one, dim):
    """log(sum(exp)) of the kept entries, plus exp(0) when add_one; 0 for an empty row."""
    x, mask = (x, mask) if dim == 1 else (x.t(), mask.t())
    out = []
    for row, keep in zip(x.tolist(), mask.tolist()):
        terms = [math.exp(v) for v, k in zip(row, keep) if k] + ([1.0] if add_one else [])
        out.append(math.log(sum(terms)) if any(keep) else 0.0)
    out = torch.tensor(out, dtype=torch.float64).unsqueeze(1)
    return out if dim == 1 else out.t()


@pytest.mark.parametrize("add_one", [True, False])
@pytest.mark.parametrize("dim", [0, 1])
def test_logsumexp_with_a_mask_matches_a_direct_computation(add_one, dim):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    mask = torch.rand(4, 6, generator=generator) > 0.4
    mask[1] = False
    mask[:, 2] = False
    got = lmu.logsumexp(x, keep_mask=mask, add_one=add_one, dim=dim)
    torch.testing.assert_close(got, direct_logsumexp(x, mask, add_one, dim))
    unmasked = lmu.logsumexp(x, add_one=add_one, dim=dim)
    torch.testing.assert_close(unmasked, direct_logsumexp(x, torch.ones_like(mask), add_one, dim))


def test_logsumexp_gradient_is_the_softmax_of_the_kept_entries():
    x = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    lmu.logsumexp(x, keep_mask=mask, add_one=True).sum().backward()
    denominator = 1 + math.exp(1) + math.exp(3)
    expected = [[math.exp(1) / denominator, 0, math.exp(3) / denominator], [0, 0, 0]]
    torch.testing.assert_close(x.grad, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_logsumexp_is_stable_for_large_values(dtype):
    x = torch.tensor([[1000.0, 999.0, -1000.0]], dtype=dtype)
    mask = torch.tensor([[True, True, False]])
    got = lmu.logsumexp(x, keep_mask=mask, add_one=True)
    assert got.item() == pytest.approx(1000 + math.log1p(math.exp(-1)), rel=1e-3)


def test_remove_self_comparisons_from_a_memory_bank():
    # Batch sample i sits at memory row curr_batch_idx[i].
    curr_batch_idx = t(5, 6, 7)
    triplets = (t(0, 0, 1, 2, 2), t(5, 6, 6, 3, 7), t(1, 2, 3, 4, 0))
    a, p, n = lmu.remove_self_comparisons(triplets, curr_batch_idx, 8)
    assert as_pairs(a, p, n) == [(0, 6, 2), (2, 3, 4)]
    pairs = (t(0, 0, 1, 2), t(5, 6, 6, 7), t(0, 1, 2, 2), t(5, 1, 2, 7))
    a1, p, a2, n = lmu.remove_self_comparisons(pairs, curr_batch_idx, 8)
    assert as_pairs(a1, p) == [(0, 6)]
    assert a2 is pairs[2] and n is pairs[3]  # negatives never compare a sample with itself
    # With ref_is_subset the anchors index the memory and the positives the batch.
    subset_triplets = (t(5, 6, 0, 7), t(0, 1, 0, 0), t(1, 1, 1, 1))
    a, p, _ = lmu.remove_self_comparisons(subset_triplets, curr_batch_idx, 8, ref_is_subset=True)
    assert as_pairs(a, p) == [(0, 0), (7, 0)]
    with pytest.raises(AssertionError, match="pair 4-tuple .* or a triplet 3-tuple"):
        lmu.remove_self_comparisons((t(0), t(1)), curr_batch_idx, 8)


@pytest.mark.parametrize("ref_labels", [None, REF_LABELS])
def test_random_triplets_are_valid_with_the_requested_count_per_anchor(ref_labels):
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    ref = labels if ref_labels is None else torch.tensor([0, 1, 1, 2, 3, 4])
    a, p, n = lmu.get_random_triplet_indices(
        labels, None if ref_labels is None else ref, t_per_anchor=7
    )
    assert (labels[a] == ref[p]).all() and (labels[a] != ref[n]).all()
    if ref_labels is None:
        assert (a != p).all()
        # Class 2 has a single member: no positive, so no triplet.
        assert torch.bincount(a, minlength=8).tolist() == [7, 7, 7, 7, 7, 0, 7, 7]
    else:
        assert torch.bincount(a, minlength=8).tolist() == [7] * 8


def test_random_triplets_default_count_is_the_class_size():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    a, _, _ = lmu.get_random_triplet_indices(labels)
    assert torch.bincount(a, minlength=6).tolist() == [3, 3, 3, 2, 2, 0]


def test_random_triplets_draw_negatives_by_weight():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2])
    weights = torch.zeros(5, 5)
    weights[:, 4] = 1  # only sample 4 may be drawn as a negative
    weights[4] = 1
    a, _, n = lmu.get_random_triplet_indices(labels, t_per_anchor=5, weights=weights)
    assert set(a.tolist()) == {0, 1, 2, 3}
    assert (n == 4).all()


def test_tuple_accessors():
    pairs = (t(0, 0, 1), t(1, 2, 3), t(0, 2, 2), t(4, 5, 0))
    triplets = (t(0, 1, 1), t(2, 3, 3), t(4, 5, 0))
    assert as_pairs(*lmu.pos_pairs_from_tuple(pairs)) == [(0, 1), (0, 2), (1, 3)]
    assert as_pairs(*lmu.neg_pairs_from_tuple(pairs)) == [(0, 4), (2, 5), (2, 0)]
    assert as_pairs(*lmu.pos_pairs_from_tuple(triplets)) == [(0, 2), (1, 3), (1, 3)]
    assert as_pairs(*lmu.neg_pairs_from_tuple(triplets)) == [(0, 4), (1, 5), (1, 0)]
    assert lmu.get_anchors(pairs).tolist() == [0, 0, 1, 0, 2, 2]
    assert lmu.get_anchors(triplets).tolist() == [0, 1, 1]


def test_size_matching_helpers():
    assert lmu.repeat_to_match_size(t(1, 2), 5, 2).tolist() == [1, 2, 1, 2, 1]
    p, n = lmu.matched_size_indices(t(0, 1, 2), t(5, 6, 7, 8, 9))
    assert p.tolist() == [0, 1, 2, 0, 1] and n.tolist() == [5, 6, 7, 8, 9]
    p, n = lmu.matched_size_indices(t(0, 1, 2, 3, 4), t(5, 6))
    assert p.tolist() == [0, 1, 2, 3, 4] and n.tolist() == [5, 6, 5, 6, 5]
    rows, cols = lmu.meshgrid_from_sizes(torch.zeros(2, 5), torch.zeros(3, 5))
    assert rows.tolist() == [[0, 0, 0], [1, 1, 1]] and cols.tolist() == [[0, 1, 2], [0, 1, 2]]


def test_values_at_and_pairs_to_masks():
    mat = torch.arange(12.0).view(3, 4).requires_grad_(True)
    rows, cols = t(0, 2, 2), t(3, 1, 1)
    values = lmu.values_at(mat, rows, cols)
    assert values.tolist() == [3, 9, 9]
    values.sum().backward()
    expected_grad = torch.zeros(3, 4)
    expected_grad[0, 3], expected_grad[2, 1] = 1, 2
    torch.testing.assert_close(mat.grad, expected_grad)
    pos_mask, neg_mask = lmu.pairs_to_masks((rows, cols, t(1), t(0)), (3, 4), "cpu")
    assert as_pairs(*torch.where(pos_mask)) == [(0, 3), (2, 1)]
    assert as_pairs(*torch.where(neg_mask)) == [(1, 0)]


def test_unique_label_positive_pairs_keep_the_first_of_each_label():
    labels = t(0, 0, 1, 1, 0, 0)
    pairs = (t(0, 1, 2, 4, 3), t(1, 0, 3, 5, 2), t(0), t(2))
    a, p = lmu.convert_to_pos_pairs_with_unique_labels(pairs, labels)
    assert as_pairs(a, p) == [(0, 1), (2, 3)]


def test_deterministic_helpers_match_pml(pml):
    from pytorch_metric_learning.utils import loss_and_miner_utils as pml_lmu

    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    ref_labels = torch.tensor([1, 0, 3, 4, 1])
    for ref in (None, ref_labels):
        for ours, theirs in [
            (lmu.get_all_pairs_indices(labels, ref), pml_lmu.get_all_pairs_indices(labels, ref)),
            (
                lmu.get_all_triplets_indices(labels, ref),
                pml_lmu.get_all_triplets_indices(labels, ref),
            ),
        ]:
            assert sorted(as_pairs(*ours)) == sorted(as_pairs(*theirs))
    pairs = lmu.get_all_pairs_indices(labels)
    assert as_pairs(*lmu.convert_to_triplets(pairs, labels)) == as_pairs(
        *pml_lmu.convert_to_triplets(pairs, labels)
    )
    triplets = lmu.get_all_triplets_indices(labels)
    for using_ref in (False, True):
        torch.testing.assert_close(
            lmu.convert_to_weights(triplets, labels, torch.float32, using_ref=using_ref),
            pml_lmu.convert_to_weights(triplets, labels, torch.float32, using_ref=using_ref),
        )
    # The batch was enqueued at memory rows 6..13 (mod 10), as CrossBatchMemory does; every
    # other positive is the anchor's own memory row.
    a, p, n = triplets
    curr_batch_idx = torch.arange(6, 14) % 10
    memory_p = torch.where(torch.arange(len(a)) % 2 == 0, curr_batch_idx[a], curr_batch_idx[p])
    ours = lmu.remove_self_comparisons((a, memory_p, n), curr_batch_idx, 10)
    theirs = pml_lmu.remove_self_comparisons((a, memory_p, n), curr_batch_idx, 10)
    assert as_pairs(*ours) == as_pairs(*theirs)
    assert len(ours[0]) == len(a) // 2


def counting_lazy_tuple():
    """A LazyIndexTuple of (0, 1, 2), (10, 11, 12) and the list of the tensors it built."""
    built = []

    def builder(offset):
        def build():
            built.append(offset)
            return torch.arange(3) + offset

        return build

    return lmu.LazyIndexTuple([builder(0), builder(10)], [3, 3]), built


def test_lazy_index_tuple_builds_each_tensor_once_on_first_access():
    indices, built = counting_lazy_tuple()
    assert len(indices) == 2 and lmu.index_tensor_lengths(indices) == [3, 3] and built == []
    assert indices[1].tolist() == [10, 11, 12] and built == [10]
    assert indices[-1] is indices[1] and built == [10]
    first, second = indices
    assert first.tolist() == [0, 1, 2] and built == [10, 0]
    with pytest.raises(IndexError):
        indices[2]


def test_lazy_index_tuple_behaves_as_a_tuple():
    indices, built = counting_lazy_tuple()
    as_tuple = tuple(indices)
    assert isinstance(as_tuple, tuple) and [x.tolist() for x in as_tuple] == [
        [0, 1, 2],
        [10, 11, 12],
    ]
    assert [[int(v) for v in x] for x in zip(*indices)] == [[0, 10], [1, 11], [2, 12]]
    tail = indices[1:]
    assert isinstance(tail, lmu.LazyIndexTuple) and tail.lengths == (3,)
    assert tail[0] is indices[1] and built == [0, 10]  # slices share what is built
    assert "lengths [3, 3]" in repr(indices)
    with pytest.raises(ValueError, match="2 index builders but 1 lengths"):
        lmu.LazyIndexTuple([lambda: t(0), lambda: t(1)], [1])


def test_index_tensor_lengths():
    assert lmu.index_tensor_lengths((t(0, 1), t(2))) == [2, 1]
    assert lmu.index_tensor_lengths([t(0)]) == [1]
    assert lmu.index_tensor_lengths(t(0, 1)) is None


@pytest.mark.parametrize("ref_labels", [None, REF_LABELS])
def test_all_pairs_of_labels_are_the_masked_entries_in_row_major_order(ref_labels):
    pos_mask, neg_mask = lmu.get_matches_and_diffs(LABELS, ref_labels)
    mat = torch.randn(pos_mask.shape, dtype=torch.float64, requires_grad=True)
    indices = lmu.all_pairs_of_labels(LABELS, ref_labels)
    pos, neg = (lmu.pick_at(mat, where) for where in indices.flat_positions)
    assert isinstance(indices, lmu.LazyIndexTuple)
    assert [x.tolist() for x in indices] == [
        x.tolist() for x in lmu.get_all_pairs_indices(LABELS, ref_labels)
    ]
    torch.testing.assert_close(pos, mat[pos_mask])
    torch.testing.assert_close(neg, mat[neg_mask])
    (pos.sum() + 2 * neg.sum()).backward()
    torch.testing.assert_close(mat.grad, pos_mask.double() + 2 * neg_mask.double())


# Three classes of two (shuffled) and the same batch in the layout order, worked out by hand:
# grouped by class, sample order 1, 3 | 0, 4 | 2, 5; rows by rank then class: 1, 0, 2, 3, 4, 5.
UNIFORM_LABELS = torch.tensor([7, 2, 9, 2, 7, 9])


def test_uniform_class_layout_orders_by_rank_then_class():
    layout = lmu.UniformClassLayout.from_labels(UNIFORM_LABELS)
    assert (layout.class_size, layout.num_classes) == (2, 3)
    assert layout.col_order.tolist() == [1, 3, 0, 4, 2, 5]
    assert layout.row_order.tolist() == [1, 0, 2, 3, 4, 5]
    a, p = layout.pos_pairs()
    assert a.shape == (2, 1, 3)
    assert as_pairs(a.flatten(), p.flatten()) == [(1, 3), (0, 4), (2, 5), (3, 1), (4, 0), (5, 2)]
    assert layout.negatives().tolist() == [
        [0, 4, 2, 5],  # anchor 1 (class 2)
        [1, 3, 2, 5],  # anchor 0 (class 7)
        [1, 3, 0, 4],  # anchor 2 (class 9)
        [0, 4, 2, 5],
        [1, 3, 2, 5],
        [1, 3, 0, 4],
    ]


@pytest.mark.parametrize("labels", [t(0, 0, 1), t(), t(1, 2, 2, 1, 1, 2, 3, 3)])
def test_uniform_class_layout_needs_equal_class_sizes(labels):
    assert lmu.UniformClassLayout.from_labels(labels) is None


@pytest.mark.parametrize(
    "labels", [UNIFORM_LABELS, t(4, 1, 1, 4, 0, 0, 1, 4, 0), t(5, 6, 7), t(3, 3)]
)
@pytest.mark.parametrize("negate_others", [False, True])
def test_split_by_class_picks_the_masked_entries_of_each_anchor(labels, negate_others):
    layout = lmu.UniformClassLayout.from_labels(labels)
    n, c = len(labels), layout.class_size
    dist = torch.randn(n, n, dtype=torch.float64)  # dist[x, y] between samples x and y
    mat = dist[layout.row_order][:, layout.col_order].requires_grad_(True)
    same, other = layout.split_by_class(mat, negate_others)
    assert same.shape == (n, c) and other.shape == (n, n - c)
    sign = -1 if negate_others else 1
    rows = layout.row_order.unsqueeze(1)
    torch.testing.assert_close(other, sign * dist[rows, layout.negatives()])
    anchors, positives = (x.flatten() for x in layout.pos_pairs())
    torch.testing.assert_close(
        same.flatten()[layout.pos_pair_positions().flatten()], dist[anchors, positives]
    )
    # Every anchor's negatives are its other-class samples, and every positive pair appears once.
    pos_mask, neg_mask = lmu.get_matches_and_diffs(labels)
    for row, anchor in enumerate(layout.row_order.tolist()):
        assert sorted(layout.negatives()[row].tolist()) == torch.where(neg_mask[anchor])[0].tolist()
    assert sorted(as_pairs(anchors, positives)) == as_pairs(*torch.where(pos_mask))
    # Backward writes each output's gradient back to its entry, and zeros for a missing one.
    same_grad, other_grad = torch.randn_like(same), torch.randn_like(other)
    (grad,) = torch.autograd.grad([same, other], mat, [same_grad, other_grad])
    expected = torch.zeros_like(mat)
    mat_pos = layout.col_order.argsort()  # sample -> its column
    expected[torch.arange(n).unsqueeze(1), mat_pos[layout.negatives()]] = sign * other_grad
    same_cols = mat_pos[layout.col_order.view(-1, c)].repeat(c, 1)  # each row's class block
    expected[torch.arange(n).unsqueeze(1), same_cols] = same_grad
    torch.testing.assert_close(grad, expected)
    (grad_other_only,) = torch.autograd.grad(other.sum(), mat)
    assert grad_other_only.gather(1, same_cols).count_nonzero() == 0


def test_split_by_class_gradcheck():
    layout = lmu.UniformClassLayout.from_labels(t(0, 1, 1, 0, 2, 2))
    mat = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: layout.split_by_class(m, True), (mat,))


def test_lexicographic_order_of_lazy_tuples():
    a, p = t(2, 0, 2, 1, 0), t(1, 3, 0, 0, 1)
    listed = lmu.LazyIndexTuple([lambda: a, lambda: p], [5, 5], lexicographic=False)
    order = listed.lexicographic_order()
    assert as_pairs(a[order], p[order]) == [(0, 1), (0, 3), (1, 0), (2, 0), (2, 1)]
    assert lmu.LazyIndexTuple([lambda: a], [5]).lexicographic_order() is None
    empty = lmu.LazyIndexTuple([lambda: t(), lambda: t()], [0, 0], lexicographic=False)
    assert empty.lexicographic_order() is None
    assert listed[1:].lexicographic is False


def test_all_pairs_of_masks_match_torch_where_and_their_flat_positions():
    pos_mask = torch.tensor([[False, True, False], [True, False, True]])
    neg_mask = ~pos_mask
    pairs = lmu.all_pairs_of_masks(pos_mask, neg_mask)
    expected = (*torch.where(pos_mask), *torch.where(neg_mask))
    assert pairs.lengths == (3, 3, 3, 3)
    for built, wanted in zip(pairs, expected):
        assert torch.equal(built, wanted)
    mat = torch.arange(6.0).view(2, 3)
    pos_values, neg_values = (lmu.pick_at(mat, where) for where in pairs.flat_positions)
    assert pos_values.tolist() == [1.0, 3.0, 5.0] and neg_values.tolist() == [0.0, 2.0, 4.0]
    # c_f.to_device accepts it: it has a device and moves to a real tuple.
    assert pairs.device == torch.device("cpu")
    moved = pairs.to("cpu")
    assert isinstance(moved, tuple) and torch.equal(moved[3], expected[3])


@pytest.mark.parametrize("num_refs", [0, 1, 9, 40])
def test_same_label_pairs_lists_the_equal_label_mask_in_row_major_order(num_refs):
    generator = torch.Generator().manual_seed(num_refs)
    labels = torch.randint(0, 6, (15,), generator=generator)
    ref_labels = torch.randint(2, 9, (num_refs,), generator=generator)  # some labels absent
    rows, cols = lmu.same_label_pairs(labels, ref_labels)
    expected_rows, expected_cols = torch.where(labels.unsqueeze(1) == ref_labels.unsqueeze(0))
    assert torch.equal(rows, expected_rows) and torch.equal(cols, expected_cols)


def test_all_pairs_of_labels_drops_each_querys_own_column():
    """A memory holding the batch at columns 3, 0, 1 (cross-batch memory): each query's
    positive pair with its own copy is left out, its other pairs kept."""
    labels = torch.tensor([5, 6, 5])
    ref_labels = torch.tensor([6, 5, 9, 5, 5])
    indices = lmu.all_pairs_of_labels(labels, ref_labels, self_columns=torch.tensor([3, 0, 1]))
    a1, p, a2, n = (x.tolist() for x in indices)
    assert list(zip(a1, p)) == [(0, 1), (0, 4), (2, 3), (2, 4)]
    assert list(zip(a2, n)) == [(0, 0), (0, 2), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0), (2, 2)]


def test_ref_labels_that_are_labels_mean_the_same_set():
    # The very object: no self pairs, exactly as with ref_labels None.
    assert as_pairs(*lmu.get_all_pairs_indices(LABELS, LABELS)) == as_pairs(
        *lmu.get_all_pairs_indices(LABELS)
    )
    pos, _ = hand_pairs(LABELS.tolist())
    assert as_pairs(*lmu.get_all_pairs_indices(LABELS, LABELS)[:2]) == pos
    anchors, positives, _ = lmu.get_random_triplet_indices(LABELS, LABELS, t_per_anchor=5)
    assert not torch.any(anchors == positives)
    # An equal copy is another set: each sample pairs with its copy.
    pos_copy, _ = hand_pairs(LABELS.tolist(), LABELS.tolist())
    assert as_pairs(*lmu.get_all_pairs_indices(LABELS, LABELS.clone())[:2]) == pos_copy
    assert (0, 0) in pos_copy


@pytest.mark.parametrize("ref_labels", [None, REF_LABELS])
def test_all_triplets_vectorized_and_loop_methods_by_hand(ref_labels):
    matches, diffs = lmu.get_matches_and_diffs(LABELS, ref_labels)
    pos, neg = hand_pairs(LABELS.tolist(), None if ref_labels is None else ref_labels.tolist())
    expected = [(a, p, n) for a, p in pos for a2, n in neg if a2 == a]
    vectorized = lmu.get_all_triplets_indices_vectorized_method(matches.to(torch.uint8), diffs)
    assert as_pairs(*vectorized) == expected
    assert as_pairs(*lmu.get_all_triplets_indices_loop_method(LABELS, matches, diffs)) == expected


def test_not_self_comparisons_in_a_wrapped_memory_bank():
    # A batch of 3 sits at memory rows 8, 9, 0 of 10: rows [8, 1) with wrap-around.
    curr_batch_idx = t(8, 9, 0)
    keep = lmu.not_self_comparisons(t(0, 1, 2, 2, 1), t(8, 9, 0, 9, 4), 8, 1, curr_batch_idx, 10)
    assert keep.tolist() == [False, False, False, True, True]
    # With ref_is_subset the anchors are memory rows and the positives batch samples.
    keep = lmu.not_self_comparisons(t(8, 9, 0, 5), t(0, 0, 2, 1), 8, 1, curr_batch_idx, 10, True)
    assert keep.tolist() == [False, True, False, True]


def test_remove_self_comparisons_refuses_uneven_tuples():
    uneven = (t(0, 1), t(5), t(0, 1))
    with pytest.raises(AssertionError, match=r"lengths \[2, 1, 2\]"):
        lmu.remove_self_comparisons(uneven, t(5, 6), 8)


@pytest.mark.parametrize("shape", [(4, 5), (0, 3), (3, 0)])
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_any_true_equals_torch_any(shape, dim):
    mask = torch.rand(shape) > 0.8  # rows and columns without any True among them
    expected = torch.any(mask) if dim is None else torch.any(mask, dim=dim, keepdim=True)
    got = lmu.any_true(mask) if dim is None else lmu.any_true(mask, dim=dim, keepdim=True)
    assert got.dtype == torch.bool and torch.equal(got, expected)
    transposed = mask.t()  # a non-contiguous view
    assert torch.equal(lmu.any_true(transposed, dim=0), torch.any(transposed, dim=0))


def test_all_pairs_of_labels_keep_the_negatives_as_a_mask_and_count_them():
    labels = torch.tensor([5, 6, 5])
    ref_labels = torch.tensor([6, 5, 9, 5, 5])
    indices = lmu.all_pairs_of_labels(labels, ref_labels, self_columns=torch.tensor([3, 0, 1]))
    pos_positions, neg_mask = indices.flat_positions
    assert pos_positions.tolist() == [1, 4, 13, 14]  # (0, 1), (0, 4), (2, 3), (2, 4)
    assert torch.equal(neg_mask, labels.unsqueeze(1) != ref_labels.unsqueeze(0))
    assert indices.lengths == (4, 4, 8, 8)  # the length known before the indices are built


def test_pick_at_and_put_at_agree_for_masks_and_flat_positions():
    mat = torch.arange(12.0).view(3, 4)
    mask = torch.tensor([[True, False, False, True], [False] * 4, [False, True, True, False]])
    positions = torch.tensor([0, 3, 9, 10])
    for where in (mask, positions):
        assert lmu.pick_at(mat, where).tolist() == [0.0, 3.0, 9.0, 10.0]
        written = lmu.put_at_(torch.zeros(3, 4), where, torch.tensor([1.0, 2.0, 3.0, 4.0]))
        assert written.flatten().tolist() == [1, 0, 0, 2, 0, 0, 0, 0, 0, 3, 4, 0]
