"""Index bookkeeping shared by losses and miners: all pairs, all/random triplets,
pair <-> triplet conversion, tuple -> sampling weights, masked logsumexp, lazily built index
tuples and the index-free layout of batches whose classes have equal sizes."""

import collections.abc
import functools

import torch

from . import common_functions as c_f
from .errors import InvalidArgumentError, InvalidArgumentTypeError


def any_true(mask, dim=None, keepdim=False):
    """torch.any of a boolean tensor, computed as the max of its bytes: on CPU, torch.any of
    bools along a dimension runs ~300x slower than a uint8 max (1M entries: 10 ms vs 0.03)."""
    if mask.numel() == 0:
        return torch.any(mask) if dim is None else torch.any(mask, dim=dim, keepdim=keepdim)
    as_bytes = mask.view(torch.uint8)
    most = torch.amax(as_bytes) if dim is None else torch.amax(as_bytes, dim=dim, keepdim=keepdim)
    return most.bool()


def logsumexp(x, keep_mask=None, add_one=True, dim=1):
    """log(sum(exp(x))) over `dim`, restricted to `keep_mask`; `add_one` adds exp(0) = 1 to the
    sum. Rows whose mask is empty give 0."""
    if keep_mask is None:
        output = torch.logsumexp(x, dim=dim, keepdim=True)
        # log(1 + sum(exp(x))) = logaddexp(logsumexp(x), 0), without concatenating a zero column.
        return torch.logaddexp(output, torch.zeros_like(output)) if add_one else output
    drop = ~keep_mask
    with torch.no_grad():
        shift = torch.amax(x.masked_fill(drop, c_f.neg_inf(x.dtype)), dim=dim, keepdim=True)
        if add_one:
            shift = shift.clamp(min=0)
        is_empty = ~any_true(keep_mask, dim=dim, keepdim=True)
        shift = shift.masked_fill(is_empty, 0)
    # Dropped entries are exponentiated as exp(0) and zeroed afterwards: filling them with a
    # huge negative number instead sends CPU exp down its slow underflow path (~40x slower).
    exps = torch.exp((x - shift).masked_fill(drop, 0)).masked_fill(drop, 0)
    total = torch.sum(exps, dim=dim, keepdim=True)
    total = total + torch.exp(-shift) if add_one else total.masked_fill(is_empty, 1)
    return torch.log(total) + shift


def is_same_set(labels, ref_labels):
    """Whether the reference set is the query set itself: `ref_labels` None or the very same
    object as `labels` (as a miner's mine() receives them without ref_emb). Then a sample's
    pair with itself is no pair, as in PML; an equal but distinct tensor is another set."""
    return ref_labels is None or ref_labels is labels


def get_matches_and_diffs(labels, ref_labels=None):
    """Boolean (N, M) masks of same-label and different-label pairs; self pairs removed when
    the reference set is the query set (see is_same_set)."""
    same_set = is_same_set(labels, ref_labels)
    ref_labels = labels if same_set else ref_labels
    matches = labels.unsqueeze(1) == ref_labels.unsqueeze(0)
    diffs = ~matches
    if same_set:
        matches.fill_diagonal_(False)
    return matches, diffs


def get_all_pairs_indices(labels, ref_labels=None):
    matches, diffs = get_matches_and_diffs(labels, ref_labels)
    a1_idx, p_idx = torch.where(matches)
    a2_idx, n_idx = torch.where(diffs)
    return a1_idx, p_idx, a2_idx, n_idx


def get_all_triplets_indices(labels, ref_labels=None):
    """Every (anchor, positive, negative) triple, built from the positive-pair list so memory is
    (#positive pairs × M), not N×M×M."""
    return get_all_triplets_indices_vectorized_method(*get_matches_and_diffs(labels, ref_labels))


def get_all_triplets_indices_vectorized_method(all_matches, all_diffs):
    """Every (anchor, positive, negative) of the (N, M) same-label and different-label masks
    (bool or 0/1), in lexicographic order (PML's name)."""
    a_idx, p_idx, pair_idx, n_idx, _ = triplets_of_pos_pairs(all_matches.bool(), all_diffs.bool())
    return a_idx.index_select(0, pair_idx), p_idx.index_select(0, pair_idx), n_idx


def get_all_triplets_indices_loop_method(labels, all_matches, all_diffs):
    """The same triplets as the vectorized method, built one anchor at a time (PML's name; not
    used internally): memory stays at one anchor's triplets plus the output. `labels` (PML's
    signature) fixes the anchors."""
    all_matches, all_diffs = all_matches.bool(), all_diffs.bool()
    per_anchor = []
    for anchor in range(len(labels)):
        positives = torch.nonzero(all_matches[anchor]).squeeze(1)
        negatives = torch.nonzero(all_diffs[anchor]).squeeze(1)
        p_idx = positives.repeat_interleave(len(negatives))
        n_idx = negatives.repeat(len(positives))
        per_anchor.append((torch.full_like(p_idx, anchor), p_idx, n_idx))
    if not per_anchor:
        empty = torch.empty(0, dtype=torch.long, device=labels.device)
        return empty, empty.clone(), empty.clone()
    return tuple(torch.cat(column) for column in zip(*per_anchor))


def triplets_of_pos_pairs(pos_mask, neg_mask):
    """All triplets laid out as a (#pos pairs × M) matrix whose row i is anchor a[i]'s row of
    `neg_mask`. Returns the positive pairs (a, p) and, per triplet in row-major order, its row
    `pair_idx`, its negative `n` and its position `flat_idx` in the flattened matrix.

    One 1-D nonzero and a repeat_interleave; 2-D nonzero and integer division would cost
    several times more at millions of triplets.
    """
    a, p = torch.where(pos_mask)
    is_triplet = neg_mask.index_select(0, a)
    flat_idx = torch.nonzero(is_triplet.view(-1)).squeeze(1)
    negs_per_pair = neg_mask.sum(dim=1).index_select(0, a)
    pair_idx = torch.repeat_interleave(torch.arange(len(a), device=a.device), negs_per_pair)
    n = flat_idx - pair_idx * neg_mask.shape[1]
    return a, p, pair_idx, n, flat_idx


def get_random_triplet_indices(labels, ref_labels=None, t_per_anchor=None, weights=None):
    """Random triplets per anchor: `t_per_anchor` each, or, when None, as many as the anchor's
    label has members in the reference set.

    Positives are drawn uniformly and negatives uniformly or with `weights[anchor]`; anchors
    lacking a positive, a negative, or any nonzero negative weight get none. Drawing works on
    whole masks at once.
    """
    matches, diffs = get_matches_and_diffs(labels, ref_labels)
    neg_probs = diffs.float() if weights is None else weights.float() * diffs
    anchors = torch.where(any_true(matches, dim=1) & (neg_probs.sum(dim=1) > 0))[0]
    if len(anchors) == 0 or t_per_anchor == 0:
        empty = torch.empty(0, dtype=torch.long, device=labels.device)
        return empty, empty.clone(), empty.clone()
    if t_per_anchor is None:
        same_set = is_same_set(labels, ref_labels)
        draws_per_anchor = matches[anchors].sum(dim=1) + int(same_set)
    else:
        draws_per_anchor = torch.full_like(anchors, t_per_anchor)
    max_draws = int(draws_per_anchor.max().item())
    p_idx = torch.multinomial(matches[anchors].float(), max_draws, replacement=True)
    n_idx = torch.multinomial(neg_probs[anchors], max_draws, replacement=True)
    keep = torch.arange(max_draws, device=labels.device) < draws_per_anchor.unsqueeze(1)
    a_idx = anchors.unsqueeze(1).expand(-1, max_draws)
    return a_idx[keep], p_idx[keep], n_idx[keep]


def convert_to_pairs(indices_tuple, labels, ref_labels=None):
    """None -> all pairs; a pair 4-tuple as is; a triplet (a, p, n) -> (a, p, a, n)."""
    if indices_tuple is None:
        return get_all_pairs_indices(labels, ref_labels)
    if len(indices_tuple) == 4:
        return indices_tuple
    if len(indices_tuple) == 3:
        a, p, n = indices_tuple
        return a, p, a, n
    raise ValueError(
        f"indices_tuple must be a pair 4-tuple (a1, p, a2, n) or a triplet 3-tuple (a, p, n), "
        f"got a tuple of length {len(indices_tuple)}"
    )


def convert_to_pos_pairs_with_unique_labels(indices_tuple, labels):
    """One positive pair per anchor label (the first seen), used by losses like N-pairs."""
    a, p, _, _ = convert_to_pairs(indices_tuple, labels)
    _, unique_idx = unique_first_occurrence(labels[a])
    return a[unique_idx], p[unique_idx]


def unique_first_occurrence(x):
    """Unique values of x and the index of each value's first occurrence."""
    unique, inverse = torch.unique(x, return_inverse=True)
    positions = torch.arange(len(x), device=x.device)
    first = torch.full((len(unique),), len(x), dtype=torch.long, device=x.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return unique, first


def convert_to_triplets(indices_tuple, labels, ref_labels=None, t_per_anchor=100):
    """None -> all or random triplets; a triplet 3-tuple as is; pairs -> every
    (a, p, n) whose positive and negative pair share the anchor."""
    if indices_tuple is None:
        if t_per_anchor == "all":
            return get_all_triplets_indices(labels, ref_labels)
        return get_random_triplet_indices(labels, ref_labels, t_per_anchor=t_per_anchor)
    if len(indices_tuple) == 3:
        return indices_tuple
    if len(indices_tuple) != 4:
        raise ValueError(
            f"indices_tuple must be a pair 4-tuple or a triplet 3-tuple, got length {len(indices_tuple)}"
        )
    return pairs_to_triplets(*indices_tuple)


def pairs_to_triplets(a1, p, a2, n):
    """Join each positive pair with every negative pair of the same anchor, in (positive pair,
    negative pair) order. The negative pairs are grouped by anchor once, so memory is
    O(#triplets) rather than #positive pairs × #negative pairs."""
    if len(a1) == 0 or len(a2) == 0:
        return tuple(torch.empty(0, dtype=torch.long, device=a1.device) for _ in range(3))
    num_anchors = int(torch.maximum(a1.max(), a2.max())) + 1
    n_by_anchor = n[torch.argsort(a2, stable=True)]
    negs_per_anchor = torch.bincount(a2, minlength=num_anchors)
    first_neg_of_anchor = torch.cumsum(negs_per_anchor, 0) - negs_per_anchor
    negs_per_pos_pair = negs_per_anchor[a1]
    pair_idx = torch.repeat_interleave(torch.arange(len(a1), device=a1.device), negs_per_pos_pair)
    first_triplet_of_pair = torch.cumsum(negs_per_pos_pair, 0) - negs_per_pos_pair
    rank_in_pair = torch.arange(len(pair_idx), device=a1.device) - first_triplet_of_pair[pair_idx]
    anchors = a1[pair_idx]
    return anchors, p[pair_idx], n_by_anchor[first_neg_of_anchor[anchors] + rank_in_pair]


def convert_to_weights(indices_tuple, labels, dtype, using_ref=False):
    """Per-sample weights proportional to how often each sample appears in the tuples (only as
    an anchor when `using_ref`, since the other indices then point into a reference set), scaled
    so the largest is 1; uniform when there are no tuples."""
    weights = torch.ones(labels.shape[0], device=labels.device, dtype=dtype)
    if indices_tuple is None or all(len(x) == 0 for x in indices_tuple):
        return weights
    indices = get_anchors(indices_tuple) if using_ref else torch.cat(list(indices_tuple), dim=0)
    counts = torch.bincount(indices, minlength=labels.shape[0]).to(dtype)
    return counts / counts.max()


def get_anchors(indices_tuple):
    """Every anchor index of a triplet tuple, or of both halves of a pair tuple."""
    if len(indices_tuple) == 3:
        return indices_tuple[0]
    return torch.cat([indices_tuple[0], indices_tuple[2]])


def pos_pairs_from_tuple(indices_tuple):
    """(anchor, positive) of a pair 4-tuple or a triplet 3-tuple."""
    return indices_tuple[0], indices_tuple[1]


def neg_pairs_from_tuple(indices_tuple):
    """(anchor, negative) of a pair 4-tuple or a triplet 3-tuple."""
    if len(indices_tuple) == 3:
        return indices_tuple[0], indices_tuple[2]
    return indices_tuple[2], indices_tuple[3]


def tuple_lengths(indices_tuple):
    """The lengths of a tuple's index tensors; a LazyIndexTuple knows them without building
    its (possibly millions of) indices."""
    if isinstance(indices_tuple, LazyIndexTuple):
        return list(indices_tuple.lengths)
    # shape[0]: len() of a tensor goes through torch's Python __len__, ~3x slower
    return [x.shape[0] if isinstance(x, torch.Tensor) else len(x) for x in indices_tuple]


def check_tuple_lengths(indices_tuple, name):
    """A pair 4-tuple (a1, p, a2, n) with len(a1) == len(p) and len(a2) == len(n), or a
    triplet 3-tuple of equal lengths: PML asserts both (and its miners raise TypeError for
    another length, hence an error of both kinds). Returns the lengths."""
    if len(indices_tuple) not in (3, 4):
        raise InvalidArgumentTypeError(
            f"{name} must be a pair 4-tuple (a1, p, a2, n) or a triplet 3-tuple (a, p, n), "
            f"got {len(indices_tuple)} tensors"
        )
    lengths = tuple_lengths(indices_tuple)
    groups = [lengths] if len(lengths) == 3 else [lengths[:2], lengths[2:]]
    if any(len(set(group)) != 1 for group in groups):
        raise InvalidArgumentError(
            f"{name} holds index tensors of lengths {lengths}; the tensors of one tuple kind "
            "must have equal lengths"
        )
    return lengths


def remove_self_comparisons(indices_tuple, curr_batch_idx, ref_size, ref_is_subset=False):
    """Drop positive pairs that compare a query with its own copy in a memory bank.

    `curr_batch_idx[i]` is the row of the memory that holds batch sample i. By default the
    anchors are the batch and the positives index the memory; with `ref_is_subset` the anchors
    index the memory and the positives the batch. Negative pairs never hold a self-comparison
    (same label), so they are kept. `ref_size` (the memory size) is part of the public signature;
    indices are compared as given, without wrapping.
    """
    check_tuple_lengths(indices_tuple, "indices_tuple")
    a, p = indices_tuple[0], indices_tuple[1]
    curr_batch_idx = torch.as_tensor(curr_batch_idx, device=a.device)
    keep = a != curr_batch_idx[p] if ref_is_subset else curr_batch_idx[a] != p
    if len(indices_tuple) == 3:
        return a[keep], p[keep], indices_tuple[2][keep]
    return a[keep], p[keep], indices_tuple[2], indices_tuple[3]


def not_self_comparisons(a, p, s, e, curr_batch_idx, ref_size, ref_is_subset=False):
    """Boolean mask of the pairs (a, p) that do not compare a batch sample with its own copy
    in a memory bank of `ref_size` rows, where the batch occupies rows [s, e) (wrapping past
    the end when e <= s) and batch sample i sits at row curr_batch_idx[i]. By default `a`
    indexes the batch and `p` the memory; with `ref_is_subset` the other way round."""
    memory_rows, batch_rows = (a, p) if ref_is_subset else (p, a)
    if s < e:
        in_batch_rows = (memory_rows >= s) & (memory_rows < e)
    else:
        in_batch_rows = (memory_rows >= s) | (memory_rows < e)
    curr_batch_idx = torch.as_tensor(curr_batch_idx, device=a.device)
    # A batch index past the batch can only pair with a row outside [s, e): clamp to look it up.
    own_row = curr_batch_idx[batch_rows.clamp(max=len(curr_batch_idx) - 1)]
    return ~(in_batch_rows & (own_row == memory_rows))


def meshgrid_from_sizes(x, y, dim=0):
    """Row and column index grids of an x.size(dim) × y.size(dim) matrix."""
    a = torch.arange(x.size(dim), device=x.device)
    b = torch.arange(y.size(dim), device=y.device)
    return torch.meshgrid(a, b, indexing="ij")


def repeat_to_match_size(smaller_set, larger_size, smaller_size):
    """Repeat `smaller_set` cyclically until it has `larger_size` elements."""
    num_repeat = -(-larger_size // smaller_size)
    return smaller_set.repeat(num_repeat)[:larger_size]


def matched_size_indices(curr_p_idx, curr_n_idx):
    """Repeat the shorter of two index lists cyclically so both have the same length."""
    num_pos, num_neg = len(curr_p_idx), len(curr_n_idx)
    if num_pos > num_neg:
        return curr_p_idx, repeat_to_match_size(curr_n_idx, num_pos, num_neg)
    return repeat_to_match_size(curr_p_idx, num_neg, num_pos), curr_n_idx


def values_at(mat, rows, cols):
    """mat[rows, cols] through a flat index_select: its backward (index_add) is several times
    faster on CPU than that of 2-D advanced indexing (index_put with accumulate)."""
    return mat.flatten().index_select(0, rows * mat.shape[1] + cols)


def pairs_to_masks(indices_tuple, shape, device):
    """Boolean N×M masks of the pairs in a 4-tuple (duplicates collapse)."""
    a1, p, a2, n = indices_tuple
    pos_mask = torch.zeros(shape, dtype=torch.bool, device=device)
    neg_mask = torch.zeros(shape, dtype=torch.bool, device=device)
    pos_mask[a1, p] = True
    neg_mask[a2, n] = True
    return pos_mask, neg_mask


class LazyIndexTuple(collections.abc.Sequence):
    """A read-only tuple of index tensors, each built on first access.

    Losses over all pairs or triplets of a batch return these: most reducers only need the loss
    values, so the millions of indices are then never built. It supports len(), indexing,
    slicing (another LazyIndexTuple sharing the built tensors), iteration and unpacking;
    tuple(x) gives a real tuple. `lengths` are the tensors' lengths, known before building.
    `flat_positions`, for all pairs of an (N, M) matrix, locate the (positive, negative) pairs
    in it, each as flat positions or a boolean mask (see pick_at, all_pairs_of_masks and
    all_pairs_of_labels); slices drop them.
    `lexicographic` says whether the tuples are listed in lexicographic order, the order in
    which PML lists all pairs and triplets (see lexicographic_order).
    """

    def __init__(self, builders, lengths, lexicographic=True, flat_positions=None):
        if len(builders) != len(lengths):
            raise ValueError(f"{len(builders)} index builders but {len(lengths)} lengths")
        self._builders = tuple(functools.cache(build) for build in builders)
        self.lengths = tuple(lengths)
        self.lexicographic = lexicographic
        self.flat_positions = flat_positions

    @property
    def device(self):
        """The device of the index tensors (builds the first one)."""
        return self[0].device

    def to(self, device):
        """A real tuple of the index tensors on `device`, so that c_f.to_device accepts it."""
        return tuple(index.to(device) for index in self)

    def __len__(self):
        return len(self._builders)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return LazyIndexTuple(self._builders[index], self.lengths[index], self.lexicographic)
        return self._builders[index]()

    def lexicographic_order(self):
        """The permutation that lists the tuples in lexicographic order, or None when they
        already are. Sorts one combined key, so it costs a sort of all the tuples."""
        if self.lexicographic or len(self) == 0 or self.lengths[0] == 0:
            return None
        key = torch.zeros_like(self[0])
        for index in self:
            key = key * (int(index.max()) + 1) + index
        return torch.argsort(key, stable=True)

    def __repr__(self):
        return f"LazyIndexTuple(index tensors of lengths {list(self.lengths)})"


def all_pairs_of_masks(pos_mask, neg_mask):
    """LazyIndexTuple (a1, p, a2, n) of every pair of the (N, M) masks, in row-major order as
    torch.where gives them, with their `flat_positions`: the 2-D indices are derived from the
    positions only when asked for."""
    pos_flat = torch.nonzero(pos_mask.view(-1)).squeeze(1)
    neg_flat = torch.nonzero(neg_mask.view(-1)).squeeze(1)
    return pairs_at_flat_positions(pos_flat, neg_flat, pos_mask.shape[1])


def pairs_at_flat_positions(pos_flat, neg_flat, num_cols):
    """LazyIndexTuple (a1, p, a2, n) of the pairs at these row-major positions of an
    (N, num_cols) matrix, with the positions kept as its `flat_positions`."""
    return LazyIndexTuple(
        [
            lambda: pos_flat // num_cols,
            lambda: pos_flat % num_cols,
            lambda: neg_flat // num_cols,
            lambda: neg_flat % num_cols,
        ],
        [len(pos_flat)] * 2 + [len(neg_flat)] * 2,
        flat_positions=(pos_flat, neg_flat),
    )


def same_label_pairs(labels, ref_labels):
    """(rows, cols) of every (i, j) with labels[i] == ref_labels[j], in row-major order, from
    one sort of ref_labels: O(N log M + pairs) work, where a mask costs a scan of all N·M.
    (A stable sort keeps each label's reference indices increasing.)"""
    sorted_ref, order = torch.sort(ref_labels, stable=True)
    first = torch.searchsorted(sorted_ref, labels)
    counts = torch.searchsorted(sorted_ref, labels, right=True) - first
    rows = torch.repeat_interleave(torch.arange(len(labels), device=labels.device), counts)
    row_starts = torch.cumsum(counts, 0) - counts
    rank_in_row = torch.arange(len(rows), device=labels.device) - row_starts[rows]
    return rows, order[first[rows] + rank_in_row]


def all_pairs_of_labels(labels, ref_labels=None, self_columns=None):
    """LazyIndexTuple (a1, p, a2, n) of every same-label (positive) and different-label
    (negative) pair, in row-major order as torch.where lists them. A query's pair with itself is
    not a positive: with `ref_labels` None (the batch is its own reference set) that is the
    diagonal; otherwise `self_columns[i]`, when given, is the reference column holding query i.

    The positives come from same_label_pairs rather than from scanning their mask. The
    negatives, often nearly all of the N·M pairs, stay a boolean (N, M) mask: their `flat_positions`
    entry is that mask (see pick_at), and their indices are built only when asked for.
    """
    same_set = is_same_set(labels, ref_labels)
    ref_labels = labels if same_set else ref_labels
    if same_set:
        self_columns = torch.arange(len(labels), device=labels.device)
    rows, cols = same_label_pairs(labels, ref_labels)
    # Every pair is either same-label (self pairs included) or a negative.
    num_neg = len(labels) * len(ref_labels) - len(rows)
    if self_columns is not None:
        not_self = cols != self_columns[rows]
        rows, cols = rows[not_self], cols[not_self]
    num_cols = len(ref_labels)
    neg_mask = labels.unsqueeze(1) != ref_labels.unsqueeze(0)
    neg_flat = functools.cache(lambda: torch.nonzero(neg_mask.view(-1)).squeeze(1))
    return LazyIndexTuple(
        [lambda: rows, lambda: cols, lambda: neg_flat() // num_cols, lambda: neg_flat() % num_cols],
        [len(rows)] * 2 + [num_neg] * 2,
        flat_positions=(rows * num_cols + cols, neg_mask),
    )


def pick_at(mat, where):
    """The entries of `mat` at `where`, in row-major order: `where` is either the entries' flat
    positions or a boolean mask of mat's shape (cheaper than the positions of a dense mask)."""
    if where.dtype == torch.bool:
        return mat.masked_select(where)
    return mat.reshape(-1).index_select(0, where)


def put_at_(mat, where, values):
    """Writes `values` into `mat` at `where` (as pick_at reads them), in place."""
    if where.dtype == torch.bool:
        return mat.masked_scatter_(where, values)
    mat.view(-1).scatter_(0, where, values)  # ~3x faster than index_put_ on CPU
    return mat


def index_tensor_lengths(indices):
    """The length of each tensor of an index tuple (without building a LazyIndexTuple), or
    None when `indices` is not a tuple or list."""
    if isinstance(indices, LazyIndexTuple):
        return list(indices.lengths)
    if isinstance(indices, (tuple, list)):
        return [len(x) for x in indices]
    return None


class UniformClassLayout:
    """The sample order that makes all pairs of a batch whose classes all have `class_size`
    members (as an M-per-class sampler gives) index-free.

    Distances are computed from query rows ordered (member rank i, class g) to reference columns
    ordered (class g, member rank j). Within the rows of one rank i, flattened, each row's
    same-class block then starts every N + class_size entries, so the same-class entries and the
    other-class entries of every row are two strided views of the (N, N) matrix.
    """

    def __init__(self, class_order, class_size):
        self.class_size = class_size
        self.num_classes = len(class_order) // class_size
        self.col_order = class_order
        self.row_order = class_order.view(self.num_classes, class_size).t().reshape(-1)

    @classmethod
    def from_labels(cls, labels):
        """The layout of a batch, or None when its classes differ in size (or it is empty)."""
        if len(labels) == 0:
            return None
        class_order = torch.argsort(labels, stable=True)
        _, sizes = torch.unique_consecutive(labels[class_order], return_counts=True)
        # The one host sync: the sizes fix the shapes, as a nonzero() would.
        smallest, largest = torch.stack(torch.aminmax(sizes)).tolist()
        return cls(class_order, largest) if smallest == largest else None

    def distance_matrix(self, distance, embeddings):
        """The (N, N) matrix in this layout: rows ordered (i, g), columns (g, j)."""
        query = embeddings.index_select(0, self.row_order)
        return distance(query, embeddings.index_select(0, self.col_order))

    def split_by_class(self, mat, negate_others=False):
        """(same-class entries (N, class_size), other-class entries (N, N - class_size)) of
        every row of `mat`, each row in column order; differentiable. `negate_others` negates
        the other-class entries within the copy, where a separate negation would cost a
        pass and a matrix more in backward."""
        return _SplitByClass.apply(mat, self.class_size, negate_others)

    def pos_pair_positions(self):
        """Positions in the flattened same-class entries of every positive pair (anchor (i, g),
        positive (g, j), j != i), shaped (i, q, g) where j is the q-th rank other than i."""
        c, num_classes = self.class_size, self.num_classes
        device = self.col_order.device
        rank = torch.arange(c, device=device)
        others = torch.arange(c - 1, device=device)
        j = others.unsqueeze(0) + (others.unsqueeze(0) >= rank.unsqueeze(1)).long()
        row = rank.view(c, 1, 1) * num_classes + torch.arange(num_classes, device=device)
        return row * c + j.unsqueeze(2)

    def pos_pairs(self):
        """Sample indices (anchors, positives) of the positive pairs, shaped (i, q, g)."""
        positions = self.pos_pair_positions()
        c = self.class_size
        anchors = self.row_order[positions // c]
        class_start = (positions // c) % self.num_classes * c
        return anchors, self.col_order[class_start + positions % c]

    def negatives(self):
        """Sample index of every other-class entry of `split_by_class`, (N, N - class_size):
        for an anchor of class g, columns [0, g * c) and then [(g + 1) * c, N)."""
        c, n = self.class_size, len(self.col_order)
        device = self.col_order.device
        position = torch.arange(n - c, device=device)
        class_start = torch.arange(self.num_classes, device=device).repeat(c).unsqueeze(1) * c
        return self.col_order[position + c * (position >= class_start)]


def _class_block_views(mat, class_size):
    """Strided views of an (N, N) matrix in UniformClassLayout order: the same-class entries
    (c, G, c) and the other-class entries (c, G - 1, N), c = class_size, G = N // c."""
    n = mat.shape[0]
    num_classes = n // class_size
    block_stride = n + class_size
    rank_stride = num_classes * n
    same = mat.as_strided(
        (class_size, num_classes, class_size), (rank_stride, block_stride, 1), mat.storage_offset()
    )
    other = mat.as_strided(
        (class_size, num_classes - 1, n),
        (rank_stride, block_stride, 1),
        mat.storage_offset() + class_size,
    )
    return same, other


class _SplitByClass(torch.autograd.Function):
    """Copies the two strided views out in forward, and writes the gradients back into one
    fresh matrix in backward: each entry is in exactly one view, so nothing is zero-filled."""

    @staticmethod
    def forward(ctx, mat, class_size, negate_others):
        ctx.set_materialize_grads(False)
        ctx.class_size = class_size
        ctx.negate_others = negate_others
        n = mat.shape[0]
        same, other = _class_block_views(mat.contiguous(), class_size)
        # Written into tensors of their own (not views), so callers may modify them in place.
        same_out, other_out = mat.new_empty(n, class_size), mat.new_empty(n, n - class_size)
        same_out.view(same.shape).copy_(same)
        _copy_maybe_negated(other, other_out.view(other.shape), negate_others)
        return same_out, other_out

    @staticmethod
    def backward(ctx, grad_same, grad_other):
        if grad_same is None and grad_other is None:
            return None, None, None
        reference = grad_same if grad_same is not None else grad_other
        n = len(reference)
        grad = reference.new_empty(n, n)
        same, other = _class_block_views(grad, ctx.class_size)
        if grad_same is None:
            same.zero_()
        else:
            same.copy_(grad_same.reshape(same.shape))
        if grad_other is None:
            other.zero_()
        else:
            _copy_maybe_negated(grad_other.reshape(other.shape), other, ctx.negate_others)
        return grad, None, None


def _copy_maybe_negated(source, destination, negate):
    if negate:
        torch.neg(source, out=destination)
    else:
        destination.copy_(source)
