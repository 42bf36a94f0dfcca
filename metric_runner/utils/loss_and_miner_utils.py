"""Index bookkeeping shared by losses and miners: all pairs, all/random triplets,
pair <-> triplet conversion, tuple -> sampling weights, masked logsumexp."""

import torch

from . import common_functions as c_f


def logsumexp(x, keep_mask=None, add_one=True, dim=1):
    """log(sum(exp(x))) over `dim`, restricted to `keep_mask`; `add_one` adds exp(0) = 1 to the
    sum. Rows whose mask is empty give 0."""
    if keep_mask is not None:
        x = x.masked_fill(~keep_mask, c_f.neg_inf(x.dtype))
    if add_one:
        zeros_shape = list(x.shape)
        zeros_shape[dim] = 1
        x = torch.cat([x, torch.zeros(zeros_shape, dtype=x.dtype, device=x.device)], dim=dim)
    output = torch.logsumexp(x, dim=dim, keepdim=True)
    if keep_mask is not None:
        output = output.masked_fill(~torch.any(keep_mask, dim=dim, keepdim=True), 0)
    return output


def get_matches_and_diffs(labels, ref_labels=None):
    """Boolean (N, M) masks of same-label and different-label pairs; self pairs removed when
    the reference set is the query set."""
    same_set = ref_labels is None
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
    matches, diffs = get_matches_and_diffs(labels, ref_labels)
    a_idx, p_idx = torch.where(matches)
    pair_idx, n_idx = torch.where(diffs[a_idx])
    return a_idx[pair_idx], p_idx[pair_idx], n_idx


def get_random_triplet_indices(labels, ref_labels=None, t_per_anchor=None, weights=None):
    """Up to `t_per_anchor` random triplets per (anchor, positive) class member.

    For each anchor, positives and negatives are drawn uniformly (or with `weights[anchor]`
    over negatives) from that anchor's valid rows; drawing works on whole masks at once.
    """
    matches, diffs = get_matches_and_diffs(labels, ref_labels)
    has_pos = matches.any(dim=1)
    has_neg = diffs.any(dim=1)
    anchors = torch.where(has_pos & has_neg)[0]
    if len(anchors) == 0 or t_per_anchor == 0:
        empty = torch.empty(0, dtype=torch.long, device=labels.device)
        return empty, empty.clone(), empty.clone()
    if t_per_anchor is None:
        t_per_anchor = int(matches.sum(dim=1).max().item())
    pos_probs = matches[anchors].float()
    if weights is None:
        neg_probs = diffs[anchors].float()
    else:
        neg_probs = weights[anchors].float() * diffs[anchors]
        neg_probs = torch.where(neg_probs.sum(dim=1, keepdim=True) > 0, neg_probs, diffs[anchors].float())
    p_idx = torch.multinomial(pos_probs, t_per_anchor, replacement=True).flatten()
    n_idx = torch.multinomial(neg_probs, t_per_anchor, replacement=True).flatten()
    a_idx = anchors.repeat_interleave(t_per_anchor)
    return a_idx, p_idx, n_idx


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
    a1, p, a2, n = indices_tuple
    if len(a1) == 0 or len(a2) == 0:
        return [torch.empty(0, dtype=torch.long, device=a1.device) for _ in range(3)]
    p_pos, n_pos = torch.where(a1.unsqueeze(1) == a2.unsqueeze(0))
    return a1[p_pos], p[p_pos], n[n_pos]


def convert_to_weights(indices_tuple, labels, dtype):
    """Sampling weights proportional to how often each sample appears in the tuples;
    uniform when there are none."""
    weights = torch.zeros(labels.shape[0], device=labels.device)
    weights = c_f.to_dtype(weights, dtype=dtype)
    if indices_tuple is None or all(len(x) == 0 for x in indices_tuple):
        return weights + 1
    indices = torch.cat(list(indices_tuple), dim=0)
    counts = torch.bincount(indices, minlength=labels.shape[0]).to(dtype)
    return counts / counts.max()


def remove_self_comparisons(indices_tuple, curr_batch_idx, ref_size, ref_is_subset=False):
    """Drop tuples where a query is compared with its own copy in a memory bank.

    `curr_batch_idx[i]` is the row of the reference set that holds query i.
    """
    if len(indices_tuple) == 3:
        a, p, n = indices_tuple
        keep = shift_indices(curr_batch_idx, ref_size)[a] != p
        return a[keep], p[keep], n[keep]
    if len(indices_tuple) == 4:
        a1, p, a2, n = indices_tuple
        keep = shift_indices(curr_batch_idx, ref_size)[a1] != p
        return a1[keep], p[keep], a2, n
    raise ValueError(f"indices_tuple must have length 3 or 4, got {len(indices_tuple)}")


def shift_indices(curr_batch_idx, ref_size):
    return torch.as_tensor(curr_batch_idx) % ref_size


def pairs_to_masks(indices_tuple, shape, device):
    """Boolean N×M masks of the pairs in a 4-tuple (duplicates collapse)."""
    a1, p, a2, n = indices_tuple
    pos_mask = torch.zeros(shape, dtype=torch.bool, device=device)
    neg_mask = torch.zeros(shape, dtype=torch.bool, device=device)
    pos_mask[a1, p] = True
    neg_mask[a2, n] = True
    return pos_mask, neg_mask
