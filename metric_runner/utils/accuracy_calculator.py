"""Retrieval and clustering accuracy of an embedding space (PML's AccuracyCalculator).

Every k-NN metric comes from one search, and each query's values are computed only from the
positions of its relevant neighbours, so the cost is one pass over the (queries x k) result.
With `k=None` (the whole reference set ranked) the search is streamed block by block and each
block is reduced to per-query values at once: memory stays O(block x references), never N x N.
"""

import numpy as np
import torch
from scipy.special import gammaln
from sklearn.metrics import normalized_mutual_info_score

from ..distances import LpDistance
from . import common_functions as c_f
from .errors import InvalidArgumentError, UnsupportedInputError
from .inference import (
    CustomKNN,
    FaissKMeans,
    import_faiss,
    release_freed_memory,
    remove_self,
    rows_per_block,
)

# PML's default label comparison; passing it (or nothing) means plain equality.
EQUALITY = torch.eq

RANKING_METRICS = (
    "mean_average_precision",
    "mean_average_precision_at_r",
    "mean_reciprocal_rank",
    "precision_at_1",
    "r_precision",
)
CLUSTERING_METRICS = ("AMI", "NMI")
METRICS_NEEDING_ALL_RELEVANT = ("mean_average_precision_at_r", "r_precision")
METHOD_PREFIX = "calculate_"
# (queries x k) elements handled at once when turning neighbours into per-query values.
VALUES_BLOCK_ELEMENTS = 2**24
# (queries x references) elements per block when k=None streams the full ranking.
STREAM_BLOCK_ELEMENTS = 2**23


def ranking_values(is_match, num_relevant):
    """Per-query values of the ranking metrics, from `is_match` (queries, k): whether each
    retrieved neighbour (nearest first) is relevant, and R = `num_relevant` per query."""
    rows, columns = torch.nonzero(is_match, as_tuple=True)
    return values_from_hit_ranks(rows, columns + 1, len(is_match), num_relevant, is_match.shape[1])


def values_from_hit_ranks(rows, ranks, num_queries, num_relevant, k):
    """Per-query values of the ranking metrics from the 1-based ranks of the relevant
    neighbours found in the first k (`rows` ascending, ranks ascending within a row).

    With rel(i) the relevance at rank i and P(i) the fraction of relevant among ranks 1..i:
    precision_at_1 = rel(1); mean_reciprocal_rank = 1 / (rank of the first relevant), 0 if none
    in k; r_precision = sum_{i<=min(R,k)} rel(i) / min(R,k) (R-precision, Manning et al. 2008);
    mean_average_precision = sum_{i<=k} P(i) rel(i) / R; mean_average_precision_at_r = the same
    sum over i <= min(R,k), divided by R (MAP@R, Musgrave et al. 2020). Only relevant positions
    are visited, and P at the j-th relevant rank r is simply j / r.
    """
    device = ranks.device
    ranks = ranks.to(torch.float64)
    hits_per_row = torch.bincount(rows, minlength=num_queries)
    row_start = torch.cumsum(hits_per_row, 0) - hits_per_row
    hit_number = torch.arange(1, len(rows) + 1, device=device) - row_start[rows]
    precision_at_hit = hit_number / ranks
    relevant = num_relevant.to(torch.float64)
    within_r = (ranks <= relevant[rows]).to(torch.float64)

    def sum_per_row(x):
        return torch.zeros(num_queries, dtype=torch.float64, device=device).index_add_(0, rows, x)

    has_hit = hits_per_row > 0
    reciprocal_rank = torch.zeros(num_queries, dtype=torch.float64, device=device)
    reciprocal_rank[has_hit] = 1 / ranks[row_start[has_hit]]
    safe_relevant = relevant.clamp(min=1)
    return {
        "precision_at_1": (reciprocal_rank == 1).to(torch.float64),
        "mean_reciprocal_rank": reciprocal_rank,
        "r_precision": sum_per_row(within_r) / safe_relevant.clamp(max=k),
        "mean_average_precision": sum_per_row(precision_at_hit) / safe_relevant,
        "mean_average_precision_at_r": sum_per_row(precision_at_hit * within_r) / safe_relevant,
    }


def order_keys(scores, largest):
    """int64 keys that order each float32 row closest first, then by column index, all distinct.

    A float's bit pattern orders like the float once negative values have their magnitude bits
    flipped; the column index fills the low 32 bits.
    """
    closeness = (-scores if largest else scores).float() + 0.0  # + 0.0 turns -0.0 into +0.0
    bits = closeness.view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (
        bits.to(torch.int64).mul_(2**32).add_(torch.arange(scores.shape[1], device=scores.device))
    )


def hit_ranks_in_full_ranking(scores, largest, is_relevant):
    """(rows, 1-based ranks) of every relevant column in its row's full ranking (ties by column
    index), without sorting the rows: the relevant columns' keys are sorted, every column is
    placed among them by binary search, and the counts per gap add up to the ranks."""
    num_rows = len(scores)
    keys = order_keys(scores, largest)
    relevant_per_row = is_relevant.sum(dim=1)
    most = int(relevant_per_row.max())
    if most == 0:
        empty = torch.empty(0, dtype=torch.long, device=scores.device)
        return empty, empty
    # Each row's relevant keys, sorted, padded with the largest key (beyond every real one).
    rows, columns = torch.nonzero(is_relevant, as_tuple=True)
    row_start = torch.cumsum(relevant_per_row, 0) - relevant_per_row
    slot = torch.arange(len(rows), device=rows.device) - row_start[rows]
    relevant_keys = torch.full((num_rows, most), torch.iinfo(torch.int64).max, device=keys.device)
    relevant_keys[rows, slot] = keys[rows, columns]
    relevant_keys = relevant_keys.sort(dim=1).values
    gap = torch.searchsorted(relevant_keys, keys)
    flat_gap = gap + (most + 1) * torch.arange(num_rows, device=gap.device).unsqueeze(1)
    per_gap = torch.bincount(flat_gap.view(-1), minlength=num_rows * (most + 1)).view(
        num_rows, most + 1
    )
    ranks = per_gap.cumsum(dim=1)[:, :most]
    found = torch.arange(most, device=gap.device).unsqueeze(0) < relevant_per_row.unsqueeze(1)
    return torch.nonzero(found, as_tuple=True)[0], ranks[found]


def label_matches(query_labels, knn_labels, label_comparison_fn=None):
    """(queries, k) booleans: whether each neighbour's label counts as the query's.

    A custom `label_comparison_fn(x, y)` receives two equally shaped arrays of labels, one pair
    per row (e.g. (M, 2) for two-level labels), and returns M booleans.
    """
    if label_comparison_fn is None:
        return knn_labels == query_labels.unsqueeze(1)
    num_queries, k = knn_labels.shape[:2]
    label_shape = knn_labels.shape[2:]
    expanded = query_labels.unsqueeze(1).expand_as(knn_labels)
    matches = label_comparison_fn(
        expanded.reshape(-1, *label_shape), knn_labels.reshape(-1, *label_shape)
    )
    return matches.reshape(num_queries, k)


def unique_labels(labels, **kwargs):
    return torch.unique(labels, dim=0 if labels.ndim > 1 else None, **kwargs)


def label_match_counts(query_labels, reference_labels, label_comparison_fn=None):
    """(unique query labels, number of reference rows matching each, each query's label index)."""
    unique_query, inverse = unique_labels(query_labels, return_inverse=True)
    unique_reference, reference_counts = unique_labels(reference_labels, return_counts=True)
    if label_comparison_fn is None:
        position = torch.searchsorted(unique_reference, unique_query).clamp(
            max=len(unique_reference) - 1
        )
        found = unique_reference[position] == unique_query
        return unique_query, torch.where(found, reference_counts[position], 0), inverse
    counts = []
    block = rows_per_block(len(unique_reference), VALUES_BLOCK_ELEMENTS)
    for start in range(0, len(unique_query), block):
        query_block = unique_query[start : start + block]
        pairs = unique_reference.unsqueeze(0).expand(len(query_block), *unique_reference.shape)
        matches = label_matches(query_block, pairs, label_comparison_fn)
        counts.append((matches.long() * reference_counts).sum(dim=1))
    return unique_query, torch.cat(counts), inverse


def self_match_counts(unique_query, label_comparison_fn=None):
    """How many times each query row finds itself in the reference: once, if its label matches itself."""
    if label_comparison_fn is None:
        return torch.ones(len(unique_query), dtype=torch.long, device=unique_query.device)
    return label_matches(unique_query, unique_query.unsqueeze(1), label_comparison_fn)[:, 0].long()


def entropy(counts, total):
    p = counts / total
    return float(-np.sum(p * (np.log(counts) - np.log(total))))


def expected_mutual_info(class_sizes, cluster_sizes, n, block_terms=2**22):
    """E[MI] of two random labelings with these class and cluster sizes (hypergeometric model,
    Vinh, Epps & Bailey 2010). A term depends on a (class, cluster) pair only through their sizes
    (a, b), so each distinct size pair is summed once, weighted by how many pairs share it."""
    a_sizes, a_multiplicity = np.unique(class_sizes, return_counts=True)
    b_sizes, b_multiplicity = np.unique(cluster_sizes, return_counts=True)
    a = np.repeat(a_sizes, len(b_sizes)).astype(np.float64)
    b = np.tile(b_sizes, len(a_sizes)).astype(np.float64)
    weight = np.outer(a_multiplicity, b_multiplicity).ravel().astype(np.float64)
    low = np.maximum(1, a + b - n)
    num_terms = np.maximum(np.minimum(a, b) - low + 1, 0).astype(np.int64)
    log_pair = (
        gammaln(a + 1) + gammaln(b + 1) + gammaln(n - a + 1) + gammaln(n - b + 1) - gammaln(n + 1)
    )
    ends = np.cumsum(num_terms)
    block_boundaries = np.searchsorted(ends, np.arange(block_terms, ends[-1], block_terms))
    total = 0.0
    for pairs in np.split(np.arange(len(a)), block_boundaries):
        counts = num_terms[pairs]
        pair = np.repeat(pairs, counts)
        n_ij = low[pair] + np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
        a_ij, b_ij = a[pair], b[pair]
        log_probability = (
            log_pair[pair]
            - gammaln(n_ij + 1)
            - gammaln(a_ij - n_ij + 1)
            - gammaln(b_ij - n_ij + 1)
            - gammaln(n - a_ij - b_ij + n_ij + 1)
        )
        log_ratio = np.log(n) + np.log(n_ij) - np.log(a_ij) - np.log(b_ij)
        total += float(np.sum(weight[pair] * n_ij / n * log_ratio * np.exp(log_probability)))
    return total


def adjusted_mutual_info(labels_true, labels_pred):
    """AMI = (MI - E[MI]) / (mean(H(U), H(V)) - E[MI]) (Vinh et al. 2010, arithmetic mean), the
    value of sklearn's adjusted_mutual_info_score, with E[MI] summed per distinct size pair."""
    _, true_ids = np.unique(labels_true, return_inverse=True)
    _, pred_ids = np.unique(labels_pred, return_inverse=True)
    n = len(true_ids)
    class_sizes, cluster_sizes = np.bincount(true_ids), np.bincount(pred_ids)
    if len(class_sizes) == len(cluster_sizes) <= 1:
        return 1.0
    num_clusters = len(cluster_sizes)
    pair_ids, n_ij = np.unique(
        true_ids.astype(np.int64) * num_clusters + pred_ids, return_counts=True
    )
    a = class_sizes[pair_ids // num_clusters]
    b = cluster_sizes[pair_ids % num_clusters]
    log_ratio = np.log(n_ij) + np.log(n) - np.log(a) - np.log(b)
    mutual_info = max(0.0, float(np.sum(n_ij / n * log_ratio)))
    normalizer = (entropy(class_sizes, n) + entropy(cluster_sizes, n)) / 2
    emi = expected_mutual_info(class_sizes, cluster_sizes, n)
    denominator = normalizer - emi
    eps = np.finfo(np.float64).eps
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return float((mutual_info - emi) / denominator)


# ---- PML's module functions: one metric from a (queries, k) neighbour-label matrix. gt_labels
# are the queries' labels shaped to broadcast against knn_labels ((N, 1) for plain labels), as
# PML's docs call them; label_comparison_fn(gt_labels, knn_labels) gives the (N, k) matches.


def get_unique_labels(labels):
    return unique_labels(labels)


def get_label_match_counts(query_labels, reference_labels, label_comparison_fn):
    """(unique query labels, how many reference rows match each)."""
    matcher = None if label_comparison_fn is EQUALITY else label_comparison_fn
    unique_query, counts, _ = label_match_counts(query_labels, reference_labels, matcher)
    return unique_query, counts


def get_lone_query_labels(query_labels, label_counts, ref_includes_query, label_comparison_fn):
    """(query labels with no match in the reference besides the query itself, a mask of the
    queries whose label is not lone)."""
    unique_query, counts = label_counts
    if ref_includes_query:
        matcher = None if label_comparison_fn is EQUALITY else label_comparison_fn
        counts = counts - self_match_counts(unique_query, matcher)
    lone_query_labels = unique_query[counts <= 0]
    is_lone = counts[positions_in(query_labels, unique_query)] <= 0
    return lone_query_labels, ~is_lone


def positions_in(labels, unique):
    """Each label's row in `unique` (sorted distinct labels that contain every label)."""
    if labels.ndim == 1:
        return torch.searchsorted(unique, labels.contiguous())
    same = labels.reshape(len(labels), 1, -1) == unique.reshape(1, len(unique), -1)
    return same.all(dim=2).to(torch.uint8).argmax(dim=1)


def get_relevance_mask(shape, gt_labels, ref_includes_query, label_counts):
    """((queries, k) mask of the first R columns, R per query): R = the number of references
    relevant to each query, its own row excluded when ref_includes_query."""
    unique_query, counts = label_counts
    labels = gt_labels.reshape(shape[0], *unique_query.shape[1:])
    num_relevant = counts[positions_in(labels, unique_query)] - int(ref_includes_query)
    columns = torch.arange(shape[1], device=gt_labels.device)
    return columns.unsqueeze(0) < num_relevant.unsqueeze(1), num_relevant


def maybe_get_avg_of_avgs(accuracy_per_sample, sample_labels, avg_of_avgs, return_per_class):
    """The mean over samples, or per class (sorted labels): their list, or their mean."""
    if not (avg_of_avgs or return_per_class):
        return torch.mean(accuracy_per_sample).item()
    classes, inverse = unique_labels(sample_labels, return_inverse=True)
    inverse = inverse.reshape(len(accuracy_per_sample))
    sums = torch.zeros(len(classes), dtype=accuracy_per_sample.dtype, device=inverse.device)
    sums.index_add_(0, inverse, accuracy_per_sample)
    per_class = sums / torch.bincount(inverse, minlength=len(classes))
    return per_class.tolist() if return_per_class else torch.mean(per_class).item()


def nan_accuracy(unique_labels, return_per_class):
    """The value of a metric with no non-lone query: NaN (per class, one NaN per label)."""
    return [float("nan")] * len(unique_labels) if return_per_class else float("nan")


def try_getting_not_lone_labels(knn_labels, query_labels, not_lone_query_mask):
    """(knn_labels, query_labels) of the non-lone queries; (None, None) when there is none."""
    if not torch.any(not_lone_query_mask):
        return None, None
    return knn_labels[not_lone_query_mask], query_labels[not_lone_query_mask]


def knn_matches(knn_labels, gt_labels, label_comparison_fn):
    return label_comparison_fn(gt_labels, knn_labels).to(torch.float64)


def precision_at_k(knn_labels, gt_labels, k, avg_of_avgs, return_per_class, label_comparison_fn):
    """Fraction of relevant labels among each query's first k neighbours."""
    matches = knn_matches(knn_labels[:, :k], gt_labels, label_comparison_fn)
    return maybe_get_avg_of_avgs(matches.sum(dim=1) / k, gt_labels, avg_of_avgs, return_per_class)


def mean_reciprocal_rank(knn_labels, gt_labels, avg_of_avgs, return_per_class, label_comparison_fn):
    """1 / (rank of the first relevant neighbour), 0 when none is among the k."""
    matches = knn_matches(knn_labels, gt_labels, label_comparison_fn)
    ranks = torch.arange(1, matches.shape[1] + 1, device=matches.device, dtype=torch.float64)
    reciprocal = (matches / ranks).max(dim=1).values  # the first hit has the largest 1 / rank
    return maybe_get_avg_of_avgs(reciprocal, gt_labels, avg_of_avgs, return_per_class)


def mean_average_precision(
    knn_labels,
    gt_labels,
    ref_includes_query,
    label_counts,
    avg_of_avgs,
    return_per_class,
    label_comparison_fn,
    at_r=False,
):
    """sum over ranks i of P(i) rel(i), divided by R (the number of relevant references);
    with at_r only the first R ranks count (MAP@R, Musgrave et al. 2020)."""
    matches = knn_matches(knn_labels, gt_labels, label_comparison_fn)
    relevance_mask, num_relevant = get_relevance_mask(
        matches.shape, gt_labels, ref_includes_query, label_counts
    )
    if at_r:
        matches = matches * relevance_mask
    ranks = torch.arange(1, matches.shape[1] + 1, device=matches.device, dtype=torch.float64)
    precision_at_rank = torch.cumsum(matches, dim=1) / ranks
    average_precision = (precision_at_rank * matches).sum(dim=1) / num_relevant
    return maybe_get_avg_of_avgs(average_precision, gt_labels, avg_of_avgs, return_per_class)


def mean_average_precision_at_r(
    knn_labels,
    gt_labels,
    ref_includes_query,
    label_counts,
    avg_of_avgs,
    return_per_class,
    label_comparison_fn,
):
    return mean_average_precision(
        knn_labels,
        gt_labels,
        ref_includes_query,
        label_counts,
        avg_of_avgs,
        return_per_class,
        label_comparison_fn,
        at_r=True,
    )


def r_precision(
    knn_labels,
    gt_labels,
    ref_includes_query,
    label_counts,
    avg_of_avgs,
    return_per_class,
    label_comparison_fn,
):
    """Fraction of relevant references among each query's first min(R, k) neighbours."""
    matches = knn_matches(knn_labels, gt_labels, label_comparison_fn)
    relevance_mask, _ = get_relevance_mask(
        matches.shape, gt_labels, ref_includes_query, label_counts
    )
    within_r = relevance_mask.to(torch.float64)
    values = (matches * within_r).sum(dim=1) / within_r.sum(dim=1)
    return maybe_get_avg_of_avgs(values, gt_labels, avg_of_avgs, return_per_class)


def check_metric_names(names, available):
    unknown = [name for name in names if name not in available]
    if unknown:
        raise InvalidArgumentError(
            f"Unknown metric(s) {unknown}: primary metrics must be one or more of: "
            f"{sorted(available)}."
        )


def select_metrics(function_dict, include=(), exclude=()):
    """The entries of function_dict named in include (all when empty), minus exclude."""
    return {
        name: function
        for name, function in function_dict.items()
        if (not include or name in include) and name not in exclude
    }


def default_kmeans_func(device):
    """faiss.Kmeans with 20 iterations (faiss's other defaults: seed 1234, at most 256 training
    points per centroid), as PML's AccuracyCalculator clusters by default: the same clusters,
    so the same NMI and AMI. (faiss's own default is 25 iterations.)"""
    faiss = import_faiss()
    on_gpu = device.type == "cuda" and hasattr(faiss, "StandardGpuResources")
    return FaissKMeans(niter=20, gpu=on_gpu)


def ranking_method(metric, counts_relevant):
    """The `calculate_<metric>` method of a ranking metric, with PML's signature (subclasses
    override and call it by that signature): it hands its arguments to `ranking_metric`. The
    metrics that divide by each query's number of relevant references (`counts_relevant`) also
    take `ref_includes_query`, which decides whether the query counts among them."""
    if counts_relevant:

        def calculate(
            self,
            knn_labels,
            query_labels,
            not_lone_query_mask,
            ref_includes_query,
            label_counts,
            **kwargs,
        ):
            kwargs["ref_includes_query"] = ref_includes_query
            return self.ranking_metric(
                metric, knn_labels, query_labels, not_lone_query_mask, label_counts, kwargs
            )

    else:

        def calculate(self, knn_labels, query_labels, not_lone_query_mask, label_counts, **kwargs):
            return self.ranking_metric(
                metric, knn_labels, query_labels, not_lone_query_mask, label_counts, kwargs
            )

    calculate.__name__ = METHOD_PREFIX + metric
    calculate.__qualname__ = f"AccuracyCalculator.{calculate.__name__}"
    calculate.__doc__ = f"{metric} over the queries that are not lone (PML's method)."
    return calculate


class AccuracyCalculator:
    """Computes NMI, AMI, precision_at_1, r_precision, mean_average_precision_at_r,
    mean_average_precision and mean_reciprocal_rank of query embeddings against a reference set.

    k-NN metrics are computed from one search of k neighbours (`k`: an int, None for the whole
    reference set, or "max_bin_count" for the largest reference class) and exclude "lone" queries,
    whose label has no other match in the reference. NMI/AMI cluster the query embeddings with
    k-means into as many clusters as there are query labels. Add a metric by defining
    `calculate_<name>(self, knn_labels, query_labels, **kwargs)` in a subclass and listing it in
    `requires_knn()` or `requires_clustering()` when it needs neighbours or cluster labels. Every
    calculate_ method receives PML's keyword arguments: query, reference, query_labels,
    reference_labels, ref_includes_query, label_counts, knn_labels, knn_distances,
    lone_query_labels, not_lone_query_mask, cluster_labels, label_comparison_fn. When only the
    built-in k-NN metrics are asked for with k=None, they are computed from a streamed ranking
    and knn_labels/knn_distances are None (no queries x references matrix is built).

    Embeddings are cast to float32 as PML casts them (integers cannot overflow); labels keep their
    type. Invalid arguments raise errors that are also AssertionErrors, and NMI/AMI with a custom
    label_comparison_fn a NotImplementedError, as PML's do (both also ValueErrors).

    Defaults: `knn_func` is exact brute-force squared-L2 search (CustomKNN with
    LpDistance(power=2, normalize_embeddings=False): the same neighbours and distances as faiss's
    IndexFlatL2, on CPU or CUDA); `kmeans_func` is FaissKMeans(niter=20).
    """

    def __init__(
        self,
        include=(),
        exclude=(),
        avg_of_avgs=False,
        return_per_class=False,
        k=None,
        label_comparison_fn=None,
        device=None,
        knn_func=None,
        kmeans_func=None,
    ):
        if avg_of_avgs and return_per_class:
            raise InvalidArgumentError(
                "avg_of_avgs and return_per_class are mutually exclusive: set one of them."
            )
        if not (
            k is None
            or k == "max_bin_count"
            or (isinstance(k, int) and not isinstance(k, bool) and k > 0)
        ):
            raise InvalidArgumentError(
                f"k must be an integer > 0, None or 'max_bin_count', got {k!r}."
            )
        self.avg_of_avgs = avg_of_avgs
        self.return_per_class = return_per_class
        self.k = k
        self.label_comparison_fn = EQUALITY if label_comparison_fn is None else label_comparison_fn
        # None selects the fast equality paths; any given function (torch.eq too) is called.
        self.matcher = label_comparison_fn
        self.device = (
            torch.device("cuda" if torch.cuda.is_available() else "cpu")
            if device is None
            else torch.device(device)
        )
        self.knn_func = (
            CustomKNN(LpDistance(normalize_embeddings=False, power=2))
            if knn_func is None
            else knn_func
        )
        self.kmeans_func = kmeans_func
        self.function_keyword = METHOD_PREFIX
        available = {
            name[len(METHOD_PREFIX) :]: getattr(self, name)
            for name in dir(self)
            if name.startswith(METHOD_PREFIX) and callable(getattr(self, name))
        }
        check_metric_names((*include, *exclude), available)
        self.original_function_dict = select_metrics(available, include, exclude)
        self.curr_function_dict = self.get_function_dict()
        self.check_clustering_is_supported()

    def check_clustering_is_supported(self):
        clustering = set(self.curr_function_dict) & set(self.requires_clustering())
        if clustering and self.label_comparison_fn is not EQUALITY:
            raise UnsupportedInputError(
                f"{sorted(clustering)} cannot use a custom label_comparison_fn (clusters come "
                "from one label per query): pass exclude=('NMI', 'AMI')."
            )

    def get_function_dict(self, include=(), exclude=()):
        """{metric name: its calculate_<name> method}: the constructor's selection, narrowed by
        include/exclude (names outside that selection are ignored, as in PML)."""
        return select_metrics(self.original_function_dict, include, exclude)

    def get_curr_metrics(self):
        return list(self.curr_function_dict)

    @staticmethod
    def check_primary_metrics(calc, include=(), exclude=()):
        """Raise unless every name in include/exclude is one of calc's current metrics."""
        check_metric_names((*include, *exclude), calc.get_curr_metrics())

    def requires_knn(self):
        return list(RANKING_METRICS)

    def requires_clustering(self):
        return list(CLUSTERING_METRICS)

    def description(self):
        return "avg_of_avgs" if self.avg_of_avgs else ""

    @torch.no_grad()
    def get_accuracy(
        self,
        query,
        query_labels,
        reference=None,
        reference_labels=None,
        ref_includes_query=False,
        include=(),
        exclude=(),
    ):
        """{metric name: value}. `reference=None` evaluates `query` against itself. With
        `ref_includes_query=True` the query must be the first len(query) rows of the reference;
        each query's own row is then never its own neighbour."""
        function_dict = self.get_function_dict(include, exclude)
        kwargs = self.prepare_inputs(
            query, query_labels, reference, reference_labels, ref_includes_query
        )
        wanted = set(function_dict)
        if wanted & set(self.requires_clustering()):
            kwargs["cluster_labels"] = self.get_cluster_labels(**kwargs)
        if wanted & set(self.requires_knn()):
            kwargs.update(self.knn_kwargs(wanted, **kwargs))
        return self._get_accuracy(function_dict, **kwargs)

    def _get_accuracy(self, function_dict, **kwargs):
        return {name: function(**kwargs) for name, function in function_dict.items()}

    def prepare_inputs(self, query, query_labels, reference, reference_labels, ref_includes_query):
        query, query_labels = self.check_embeddings_and_labels(query, query_labels, "query")
        if reference is None:
            reference, reference_labels, ref_includes_query = query, query_labels, True
        else:
            if reference_labels is None:
                raise ValueError("reference_labels must be given whenever reference is given.")
            reference, reference_labels = self.check_embeddings_and_labels(
                reference, reference_labels, "reference"
            )
            if reference.shape[1] != query.shape[1]:
                raise ValueError(
                    f"query has embedding size {query.shape[1]} but reference has {reference.shape[1]}."
                )
            if ref_includes_query:
                self.check_reference_starts_with_query(
                    query, query_labels, reference, reference_labels
                )
        return {
            "query": query,
            "reference": reference,
            "query_labels": query_labels,
            "reference_labels": reference_labels,
            "ref_includes_query": ref_includes_query,
            "label_comparison_fn": self.label_comparison_fn,
        }

    def check_embeddings_and_labels(self, embeddings, labels, name):
        # float32 whatever comes in (integers, half, float64), as PML computes: integer
        # embeddings cannot overflow in the distances. Labels keep their integer type: in
        # float32, labels above 2**24 would merge.
        embeddings = c_f.numpy_to_torch(embeddings).to(self.device, torch.float32)
        labels = c_f.numpy_to_torch(labels).to(self.device)
        if embeddings.ndim != 2 or len(embeddings) == 0:
            raise ValueError(
                f"{name} must be a non-empty 2D (N, embedding_size) array, got shape {tuple(embeddings.shape)}."
            )
        if len(labels) != len(embeddings):
            raise ValueError(
                f"{name} has {len(embeddings)} rows but its labels have {len(labels)}: pass one label per row."
            )
        if labels.ndim != 1 and self.matcher is None:
            raise ValueError(
                f"{name} labels have shape {tuple(labels.shape)}: multi-level labels need a "
                "label_comparison_fn (or pass one level, e.g. labels[:, 0])."
            )
        if not torch.isfinite(embeddings).all():
            raise ValueError(f"{name} embeddings contain NaN or inf values.")
        return embeddings, labels

    def check_reference_starts_with_query(self, query, query_labels, reference, reference_labels):
        n = len(query)
        if not (
            len(reference) >= n
            and torch.equal(reference[:n], query)
            and torch.equal(reference_labels[:n], query_labels)
        ):
            raise ValueError(
                "ref_includes_query=True needs the first len(query) rows of reference (and of "
                "reference_labels) to be query (and query_labels); put the query first or set "
                "ref_includes_query=False."
            )

    def get_cluster_labels(self, query, query_labels, **kwargs):
        if query_labels.ndim != 1:
            raise ValueError(
                "NMI and AMI need 1D labels: exclude them, e.g. exclude=('NMI', 'AMI')."
            )
        if self.kmeans_func is None:
            self.kmeans_func = default_kmeans_func(self.device)
        num_clusters = len(torch.unique(query_labels))
        c_f.LOGGER.info(f"running k-means clustering with k={num_clusters}")
        c_f.LOGGER.info(f"embedding dimensionality is {query.shape[1]}")
        return self.kmeans_func(query, num_clusters)

    def determine_k(self, bin_counts, num_reference_embeddings, ref_includes_query):
        """The number of neighbours to search, at most the number of other reference rows."""
        self_count = int(ref_includes_query)
        available = num_reference_embeddings - self_count
        if self.k is None:
            return available
        if self.k == "max_bin_count":
            return max(1, min(int(bin_counts.max()) - self_count, available))
        return min(self.k, available)

    def knn_kwargs(
        self, wanted, query, reference, query_labels, reference_labels, ref_includes_query, **kwargs
    ):
        """Label counts, lone queries, and the neighbours (or, when k=None, streamed per-query
        values) every k-NN metric needs."""
        fn = self.matcher
        unique_query, counts, inverse = label_match_counts(query_labels, reference_labels, fn)
        own = (
            self_match_counts(unique_query, fn) if ref_includes_query else torch.zeros_like(counts)
        )
        num_relevant = (counts - own)[inverse]
        not_lone_query_mask = num_relevant > 0
        knn = {
            "label_counts": (unique_query, counts),
            "lone_query_labels": unique_query[counts - own == 0],
            "not_lone_query_mask": not_lone_query_mask,
        }
        if len(reference) - int(ref_includes_query) < 1:
            raise ValueError(
                "The reference set has no rows besides the query itself: nothing to search."
            )
        # The largest class; under a custom comparison, the most matches any query label has.
        bin_counts = (
            unique_labels(reference_labels, return_counts=True)[1] if fn is None else counts
        )
        k = self.determine_k(bin_counts, len(reference), ref_includes_query)
        c_f.LOGGER.info(f"running k-nn with k={k + int(ref_includes_query)}")
        c_f.LOGGER.info(f"embedding dimensionality is {query.shape[1]}")
        if not not_lone_query_mask.any():
            c_f.LOGGER.warning(
                "None of the query labels are in the reference set: k-NN metrics are NaN."
            )
        elif wanted & set(METRICS_NEEDING_ALL_RELEVANT) and k < int(num_relevant.max()):
            c_f.LOGGER.warning(
                f"k={k} is smaller than the largest number of relevant references "
                f"({int(num_relevant.max())}), so r_precision and mean_average_precision_at_r "
                "only see the first k of them; set k='max_bin_count' (or use "
                "mean_average_precision for MAP@k)."
            )
        if self.k is None and self.can_stream(wanted):
            # The built-in metrics need no (queries x references) neighbour matrix.
            knn["knn_labels"] = knn["knn_distances"] = None
            knn["ranking_values"] = self.stream_ranking_values(
                query, reference, query_labels, reference_labels, num_relevant, ref_includes_query
            )
            return knn
        knn_distances, knn_indices = self.knn_func(query, k, reference, ref_includes_query)
        knn["knn_labels"] = reference_labels[knn_indices]
        knn["knn_distances"] = knn_distances
        if wanted & set(RANKING_METRICS):
            knn["ranking_values"] = self.block_ranking_values(
                query_labels, knn["knn_labels"], num_relevant
            )
        return knn

    def can_stream(self, wanted):
        """Streaming yields only the built-in per-query values, so every requested k-NN metric
        must be a built-in one that a subclass has not redefined."""
        knn_metrics = wanted & set(self.requires_knn())
        return all(
            name in RANKING_METRICS
            and getattr(type(self), METHOD_PREFIX + name)
            is getattr(AccuracyCalculator, METHOD_PREFIX + name)
            for name in knn_metrics
        )

    def block_ranking_values(self, query_labels, knn_labels, num_relevant):
        values = {name: [] for name in RANKING_METRICS}
        block = rows_per_block(knn_labels.shape[1], VALUES_BLOCK_ELEMENTS)
        for start in range(0, len(query_labels), block):
            end = start + block
            is_match = label_matches(query_labels[start:end], knn_labels[start:end], self.matcher)
            for name, value in ranking_values(is_match, num_relevant[start:end]).items():
                values[name].append(value)
        return {name: torch.cat(value) for name, value in values.items()}

    def stream_ranking_values(
        self, query, reference, query_labels, reference_labels, num_relevant, ref_includes_query
    ):
        """Per-query values over the whole ranking, one block of queries at a time. The default
        CustomKNN hands over each block's scores, which are ranked without sorting; any other
        knn_func returns each block's full ranking."""
        values = {name: [] for name in RANKING_METRICS}
        block = rows_per_block(len(reference), STREAM_BLOCK_ELEMENTS)
        num_others = len(reference) - int(ref_includes_query)
        use_scores = isinstance(self.knn_func, CustomKNN)
        scorer = self.knn_func.block_scorer(reference) if use_scores else None
        for start in range(0, len(query), block):
            end = min(start + block, len(query))
            own_rows = torch.arange(start, end, device=query.device) if ref_includes_query else None
            if use_scores:
                rows, ranks = self.hit_ranks_from_scores(
                    scorer, query[start:end], query_labels[start:end], reference_labels, own_rows
                )
            else:
                rows, ranks = self.hit_ranks_from_knn_func(
                    query[start:end], query_labels[start:end], reference, reference_labels, own_rows
                )
            block_values = values_from_hit_ranks(
                rows, ranks, end - start, num_relevant[start:end], num_others
            )
            for name, value in block_values.items():
                values[name].append(value)
            release_freed_memory()
        return {name: torch.cat(value) for name, value in values.items()}

    def hit_ranks_from_scores(self, scorer, query_block, query_labels, reference_labels, own_rows):
        score, largest, _ = scorer
        scores = score(query_block)
        reference_labels = reference_labels.unsqueeze(0).expand(
            len(query_block), *reference_labels.shape
        )
        is_relevant = label_matches(query_labels, reference_labels, self.matcher)
        if own_rows is not None:
            # Each query's own row goes last and does not count as relevant.
            block_rows = torch.arange(len(query_block), device=scores.device)
            scores[block_rows, own_rows] = float("-inf") if largest else float("inf")
            is_relevant[block_rows, own_rows] = False
        return hit_ranks_in_full_ranking(scores, largest, is_relevant)

    def hit_ranks_from_knn_func(
        self, query_block, query_labels, reference, reference_labels, own_rows
    ):
        # The block is not the first rows of the reference, so its own rows are removed here.
        distances, indices = self.knn_func(query_block, len(reference), reference, False)
        if own_rows is not None:
            distances, indices = remove_self(distances, indices, own_rows)
        is_match = label_matches(query_labels, reference_labels[indices], self.matcher)
        rows, columns = torch.nonzero(is_match, as_tuple=True)
        return rows, columns + 1

    def average(self, values, query_labels, not_lone_query_mask, label_counts):
        """Mean over non-lone queries, per class (return_per_class), or of the per-class means
        (avg_of_avgs). Lone queries get weight 0 rather than being indexed out: a boolean index
        is a parallel region of its own, slow on a busy machine, and this runs once per metric."""
        weights = not_lone_query_mask.to(values.dtype)
        count = weights.sum()
        if count == 0:
            return nan_accuracy(label_counts[0], self.return_per_class)
        values = torch.where(not_lone_query_mask, values, 0)
        if not (self.avg_of_avgs or self.return_per_class):
            return (values.sum() / count).item()
        classes, inverse = unique_labels(query_labels, return_inverse=True)
        sums = torch.zeros(len(classes), dtype=values.dtype, device=values.device)
        counts = torch.zeros_like(sums)
        sums.index_add_(0, inverse, values)
        counts.index_add_(0, inverse, weights)
        per_class = sums[counts > 0] / counts[counts > 0]
        return per_class.tolist() if self.return_per_class else per_class.mean().item()

    def ranking_metric(
        self, name, knn_labels, query_labels, not_lone_query_mask, label_counts, kwargs
    ):
        """The averaged metric: from the per-query values of our one pass over the neighbours
        when get_accuracy computed them, else (a direct call with knn_labels, as PML's callers
        make) from knn_labels with PML's module function."""
        if "ranking_values" in kwargs:
            values = kwargs["ranking_values"][name]
            return self.average(values, query_labels, not_lone_query_mask, label_counts)
        knn_labels, query_labels = try_getting_not_lone_labels(
            knn_labels, query_labels, not_lone_query_mask
        )
        if knn_labels is None:
            return nan_accuracy(label_counts[0], self.return_per_class)
        gt_labels = query_labels.unsqueeze(1)
        averaging = (self.avg_of_avgs, self.return_per_class, self.label_comparison_fn)
        if name == "precision_at_1":
            return precision_at_k(knn_labels, gt_labels, 1, *averaging)
        if name == "mean_reciprocal_rank":
            return mean_reciprocal_rank(knn_labels, gt_labels, *averaging)
        counting = (gt_labels, kwargs["ref_includes_query"], label_counts)
        if name == "r_precision":
            return r_precision(knn_labels, *counting, *averaging)
        at_r = name == "mean_average_precision_at_r"
        return mean_average_precision(knn_labels, *counting, *averaging, at_r=at_r)

    calculate_precision_at_1 = ranking_method("precision_at_1", counts_relevant=False)
    calculate_mean_reciprocal_rank = ranking_method("mean_reciprocal_rank", counts_relevant=False)
    calculate_r_precision = ranking_method("r_precision", counts_relevant=True)
    calculate_mean_average_precision = ranking_method(
        "mean_average_precision", counts_relevant=True
    )
    calculate_mean_average_precision_at_r = ranking_method(
        "mean_average_precision_at_r", counts_relevant=True
    )

    def calculate_NMI(self, query_labels, cluster_labels, **kwargs):
        return float(
            normalized_mutual_info_score(c_f.to_numpy(query_labels), c_f.to_numpy(cluster_labels))
        )

    def calculate_AMI(self, query_labels, cluster_labels, **kwargs):
        return adjusted_mutual_info(c_f.to_numpy(query_labels), c_f.to_numpy(cluster_labels))
