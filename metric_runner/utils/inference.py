"""Nearest-neighbour search, k-means and retrieval with a trained model (PML's utils.inference).

Every k-NN function follows one contract, `knn_func(query, k, reference, ref_includes_query)
-> (distances, indices)`, each (len(query), k), nearest first, on the query's device. Ties are
broken by the lower reference index, so a search gives the same answer whatever its block size.
When `ref_includes_query` is True the query is the first len(query) rows of the reference: k + 1
neighbours are searched and each query's own row is removed (the last neighbour when the own
row is not among them).
"""

import ctypes

import numpy as np
import torch

from ..distances import CosineSimilarity, LpDistance
from . import common_functions as c_f

# Largest (queries x references) block a search materialises at once: 2**26 float32 = 256 MiB.
SEARCH_BLOCK_ELEMENTS = 2**26
# Beyond this many query rows a bigger block no longer speeds up the product, only costs memory.
MAX_BLOCK_ROWS = 1024
# faiss GPU indexes cannot return more neighbours than this.
FAISS_GPU_MAX_K = 2048


def load_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


MALLOC_TRIM = load_malloc_trim()


def release_freed_memory():
    """Hand freed heap memory back to the OS. glibc keeps freed blocks below its (self-raising,
    up to 32 MiB) mmap threshold in the heap, so a long series of block-sized temporaries would
    otherwise grow the resident size far beyond one block."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


def import_faiss():
    try:
        import faiss
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "faiss is not installed: `pip install faiss-cpu` (or faiss-gpu), or use "
            "CustomKNN(distance) as knn_func / a kmeans_func of your own."
        ) from error
    return faiss


def at_least_float32(x):
    """Half-precision inputs are scored in float32 (no CPU half matmul, and ties would abound)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def rows_per_block(num_columns, block_elements=SEARCH_BLOCK_ELEMENTS):
    return max(1, block_elements // max(1, num_columns))


def check_knn_args(query, k, reference_shape, ref_includes_query):
    if query.ndim != 2 or len(reference_shape) != 2:
        raise ValueError(
            f"query and reference must be 2D (N, embedding_size), got {tuple(query.shape)} "
            f"and {tuple(reference_shape)}."
        )
    if query.shape[1] != reference_shape[1]:
        raise ValueError(
            f"query has embedding size {query.shape[1]} but reference has {reference_shape[1]}."
        )
    available = reference_shape[0] - int(ref_includes_query)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 0 < k <= available:
        raise ValueError(
            f"k must be an integer in [1, {available}] (the reference has {reference_shape[0]} rows"
            f"{', one of them the query itself' if ref_includes_query else ''}), got {k!r}."
        )


def ordered_topk(mat, k, largest):
    """Top-k of each row, ordered by value and then by column index."""
    values, indices = topk_candidates(mat, k, largest)
    order_ties_by_index(values, indices, largest)
    return values, indices


def topk_candidates(mat, k, largest, out=None):
    """The k best columns of each row, ordered by value; among columns tied with the k-th,
    the lowest indices are kept. Equal values inside the k may still be in any order (fix it
    with order_ties_by_index). `out`: (values, indices) buffers of k + 1 columns (or as many as
    `mat` has, if fewer) that the result is written into; the returned tensors are views.

    torch.topk leaves the order of equal values unspecified, so rows whose k-th and (k+1)-th
    values tie are redone with a stable sort.
    """
    num_columns = mat.shape[1]
    width = min(k + 1, num_columns)
    if out is None:
        out = (
            mat.new_empty((len(mat), width)),
            torch.empty((len(mat), width), dtype=torch.long, device=mat.device),
        )
    values, indices = out
    if 2 * k >= num_columns:
        sorted_values, order = torch.sort(mat, dim=1, descending=largest, stable=True)
        values.copy_(sorted_values[:, :width])
        indices.copy_(order[:, :width])
        return values[:, :k], indices[:, :k]
    torch.topk(mat, k + 1, dim=1, largest=largest, sorted=True, out=(values, indices))
    boundary_tie = values[:, k - 1] == values[:, k]
    if boundary_tie.any():
        rows = torch.nonzero(boundary_tie).squeeze(1)
        tied_values, tied_indices = torch.sort(mat[rows], dim=1, descending=largest, stable=True)
        values[rows, :k] = tied_values[:, :k]
        indices[rows, :k] = tied_indices[:, :k]
    return values[:, :k], indices[:, :k]


def order_ties_by_index(values, indices, largest):
    """In place: within each row (sorted by value), equal values ordered by column index."""
    inner_tie = (values[:, 1:] == values[:, :-1]).any(dim=1)
    if inner_tie.any():
        rows = torch.nonzero(inner_tie).squeeze(1)
        by_index, order = torch.sort(indices[rows], dim=1)
        tied_values, order_by_value = torch.sort(
            values[rows].gather(1, order), dim=1, descending=largest, stable=True
        )
        values[rows] = tied_values
        indices[rows] = by_index.gather(1, order_by_value)


def remove_self(distances, indices, self_indices):
    """Drop one column per row: the query's own reference row, or the last when it is absent."""
    num_rows, num_columns = indices.shape
    found, position = (indices == self_indices.unsqueeze(1)).max(dim=1)
    drop = torch.where(found, position, num_columns - 1)
    kept = torch.arange(num_columns - 1, device=indices.device).unsqueeze(0).expand(num_rows, -1)
    kept = kept + (kept >= drop.unsqueeze(1))
    return distances.gather(1, kept), indices.gather(1, kept)


class CustomKNN:
    """Exact k-NN by brute force with any distance object (`LpDistance`, `CosineSimilarity`, ...).

    Queries are processed `batch_size` rows at a time (default: as many as keep the block under
    SEARCH_BLOCK_ELEMENTS, at most MAX_BLOCK_ROWS), so memory beyond the output is one block,
    never the full matrix.
    Distances come back as the distance object computes them (similarities for inverted ones).
    """

    def __init__(self, distance, batch_size=None):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size}.")
        self.distance = distance
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, query, k, reference, ref_includes_query=False):
        check_knn_args(query, k, reference.shape, ref_includes_query)
        num_search = k + int(ref_includes_query)
        score, largest, to_distances = self.block_scorer(reference)
        batch_size = self.batch_size or min(MAX_BLOCK_ROWS, rows_per_block(len(reference)))
        # Each block only scores and selects, into buffers shared by all blocks (the scorer
        # reuses one for the scores): every extra per-block operation is one more wait for all
        # threads on a busy machine. Ties inside the k and the conversion to distances are done
        # once, on the whole result.
        kept = None
        for start in range(0, len(query), batch_size):
            block = query[start : start + batch_size]
            scores = score(block)
            if kept is None:
                width = min(num_search + 1, len(reference))
                kept = (
                    scores.new_empty((len(query), width)),
                    torch.empty((len(query), width), dtype=torch.long, device=scores.device),
                )
            end = start + len(block)
            topk_candidates(
                scores, num_search, largest, out=(kept[0][start:end], kept[1][start:end])
            )
        del score, scores
        release_freed_memory()
        scores, indices = kept[0][:, :num_search], kept[1][:, :num_search]
        order_ties_by_index(scores, indices, largest)
        distances = to_distances(scores, query)
        if ref_includes_query:
            return remove_self(distances, indices, torch.arange(len(query), device=indices.device))
        return distances.contiguous(), indices.contiguous()

    def block_scorer(self, reference):
        """(score, largest, to_distances): `score(query_block)` scores the reference for each
        query row (larger is closer when `largest`); `to_distances(kept_scores, query)` turns
        the scores kept for `query` into the distance's values (in place when it can).

        Euclidean distances rank like |r|^2 - 2 q.r, which one matrix product gives: the query's
        |q|^2 (constant along a row), the clamp at 0 and the root are applied to the k kept
        values only, and reference norms are computed once, not per block. The scores of every
        block go into one buffer, so each block's scores are valid until the next call: a
        fresh block-sized allocation would be page-faulted in again for every block.
        """
        distance = self.distance
        if type(distance) is LpDistance and distance.p == 2 and distance.power in (1, 2):
            reference = distance.maybe_normalize(at_least_float32(reference))
            reference_sq_norms = (reference * reference).sum(dim=1)
            buffer = []

            def score(block):
                block = distance.maybe_normalize(at_least_float32(block))
                if not buffer:  # the first block is the largest
                    buffer.append(block.new_empty((len(block), len(reference))))
                out = buffer[0][: len(block)]
                return torch.addmm(reference_sq_norms, block, reference.T, alpha=-2, out=out)

            def to_distances(kept, query):
                query = distance.maybe_normalize(at_least_float32(query))
                squared = kept.add_((query * query).sum(dim=1, keepdim=True)).clamp_(min=0)
                return squared.sqrt_() if distance.power == 1 else squared

            return score, False, to_distances

        def score(block):
            return distance(block, reference)

        return score, distance.is_inverted, lambda kept, query: kept


class FaissKNN:
    """Exact (IndexFlatL2 by default) or approximate k-NN with a faiss index.

    `reset_before`: build a fresh index from `reference` at each call (otherwise `reference` is
    added to the current index). `reset_after`: drop the index after the call. `index_init_fn`
    (default faiss.IndexFlatL2) takes the embedding size and returns an empty index. On CUDA
    queries, the index is copied to GPU(s) `gpus` (all by default) when faiss has GPU support
    and k <= 2048; otherwise the search runs on the CPU. IndexFlatL2 distances are squared L2.
    """

    def __init__(self, reset_before=True, reset_after=True, index_init_fn=None, gpus=None):
        self.faiss = import_faiss()
        self.reset_before = reset_before
        self.reset_after = reset_after
        self.index_init_fn = self.faiss.IndexFlatL2 if index_init_fn is None else index_init_fn
        self.gpus = gpus
        self.index = None

    @torch.no_grad()
    def __call__(self, query, k, reference=None, ref_includes_query=False):
        if reference is not None:
            if self.reset_before:
                self.reset()
            self.add(reference)
        if self.index is None:
            raise ValueError(
                "FaissKNN has no index to search: pass reference, or call train(embeddings) first."
            )
        check_knn_args(query, k, (self.index.ntotal, self.index.d), ref_includes_query)
        num_search = k + int(ref_includes_query)
        distances, indices = self.search_index(query, num_search)
        distances = torch.from_numpy(distances).to(query.device)
        indices = torch.from_numpy(indices).to(query.device)
        if ref_includes_query:
            own_rows = torch.arange(len(query), device=query.device)
            distances, indices = remove_self(distances, indices, own_rows)
        if self.reset_after:
            self.reset()
        return distances, indices

    def search_index(self, query, k):
        index = self.index
        if query.is_cuda and k <= FAISS_GPU_MAX_K and hasattr(self.faiss, "StandardGpuResources"):
            index = convert_to_gpu_index(index, self.gpus)
        return index.search(to_faiss_array(query), k)

    def train(self, embeddings):
        """Build a new index holding `embeddings`."""
        self.reset()
        self.add(embeddings)

    def add(self, embeddings):
        if embeddings.ndim != 2:
            raise ValueError(
                f"embeddings must be 2D (N, embedding_size), got {tuple(embeddings.shape)}."
            )
        if self.index is None:
            self.index = self.index_init_fn(embeddings.shape[1])
        elif self.index.d != embeddings.shape[1]:
            raise ValueError(
                f"The index holds {self.index.d}-d embeddings but got {embeddings.shape[1]}-d ones."
            )
        self.index.add(to_faiss_array(embeddings))

    def reset(self):
        self.index = None

    def save(self, filename):
        if self.index is None:
            raise ValueError("FaissKNN has no index to save: call train(embeddings) first.")
        self.faiss.write_index(self.index, str(filename))

    def load(self, filename):
        self.index = self.faiss.read_index(str(filename))


def to_faiss_array(x):
    return np.ascontiguousarray(c_f.to_numpy(x), dtype=np.float32)


def convert_to_gpu_index(index, gpus):
    """A copy of a CPU faiss index on GPUs `gpus` (all when None)."""
    faiss = import_faiss()
    if gpus is None:
        return faiss.index_cpu_to_all_gpus(index)
    return faiss.index_cpu_to_gpus_list(index, gpus=gpus)


def convert_to_cpu_index(index):
    """A CPU copy of a GPU faiss index; a CPU-only faiss has only CPU indexes to return."""
    to_cpu = getattr(import_faiss(), "index_gpu_to_cpu", None)
    return index if to_cpu is None else to_cpu(index)


def add_to_index_and_search(index, query, reference, k):
    """Add `reference` to the faiss index and return the k nearest (distances, indices) of each
    query row as tensors."""
    index.add(to_faiss_array(reference))
    distances, indices = index.search(to_faiss_array(query), k)
    return torch.from_numpy(distances), torch.from_numpy(indices)


def try_gpu(index, query, reference, k, is_cuda, gpus):
    """add_to_index_and_search on GPU copies of the index when the data is on CUDA and faiss
    can (GPU build, k within its GPU limit), else on the CPU index."""
    on_gpu = is_cuda and k <= FAISS_GPU_MAX_K and hasattr(import_faiss(), "StandardGpuResources")
    if on_gpu:
        index = convert_to_gpu_index(index, gpus)
    return add_to_index_and_search(index, query, reference, k)


def mask_reshape_knn_idx(x, matches_self_idx):
    """Drop the one masked entry of each row of x (rows keep their order)."""
    return x[~matches_self_idx].view(len(x), -1)


def return_results(D, I, ref_includes_query):  # noqa: E741  (PML's argument names)
    """(distances, indices) of a search, each row's own index removed when ref_includes_query
    (the last neighbour when the own index was not found)."""
    if not ref_includes_query:
        return D, I
    D, I = c_f.numpy_to_torch(D), c_f.numpy_to_torch(I)  # noqa: E741
    return remove_self(D, I, torch.arange(len(I), device=I.device))


def run_pca(x, output_dimensionality):
    """x projected on its first output_dimensionality principal components (faiss PCAMatrix)."""
    faiss = import_faiss()
    data = to_faiss_array(x)
    pca = faiss.PCAMatrix(data.shape[1], output_dimensionality)
    pca.train(data)
    projected = torch.from_numpy(pca.apply(data))
    return projected.to(x.device) if torch.is_tensor(x) else projected.numpy()


def get_topk(distances, indices, k, get_largest):
    """An iter_fn for BatchedDistance that writes the k closest entries of each block's rows into
    distances[s:e] and indices[s:e]."""

    def fn(mat, s, e):
        values, positions = torch.topk(mat, k, dim=1, largest=get_largest)
        distances[s:e] = values
        indices[s:e] = positions

    return fn


class BatchedDistance(torch.nn.Module):
    """Applies `distance` to batch_size query rows at a time and hands each block to
    iter_fn(mat, s, e) (mat = the distances of query rows s..e-1), so the full matrix never
    exists at once."""

    def __init__(self, distance, iter_fn=None, batch_size=32):
        super().__init__()
        self.distance = distance
        self.iter_fn = iter_fn
        self.batch_size = batch_size

    def forward(self, query_emb, ref_emb=None):
        ref_emb = query_emb if ref_emb is None else ref_emb
        for s in range(0, len(query_emb), self.batch_size):
            e = s + self.batch_size
            self.iter_fn(self.distance(query_emb[s:e], ref_emb), s, e)

    def __getattr__(self, name):
        # Read like the wrapped distance (is_inverted, normalize_embeddings, ...).
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.distance, name)


class FaissKMeans:
    """k-means with faiss.Kmeans(**kwargs) (faiss's defaults unless overridden, e.g. niter=20).
    Returns each row's cluster as a long tensor on the input's device."""

    def __init__(self, **kwargs):
        self.faiss = import_faiss()
        self.kwargs = kwargs

    def __call__(self, x, nmb_clusters):
        if x.ndim != 2:
            raise ValueError(f"x must be 2D (N, embedding_size), got {tuple(x.shape)}.")
        data = to_faiss_array(x)
        kmeans = self.faiss.Kmeans(data.shape[1], int(nmb_clusters), **self.kwargs)
        kmeans.train(data)
        _, cluster_ids = kmeans.index.search(data, 1)
        return torch.from_numpy(cluster_ids[:, 0]).long().to(x.device)


class MatchFinder:
    """Decides which pairs match: similarity >= threshold (inverted distances) or distance <=
    threshold. `threshold` can be given here or per call."""

    def __init__(self, distance, threshold=None):
        self.distance = distance
        self.threshold = threshold

    def get_threshold(self, threshold):
        threshold = self.threshold if threshold is None else threshold
        if threshold is None:
            raise ValueError("No threshold: pass threshold to MatchFinder(...) or to this call.")
        return threshold

    def operate_on_emb(self, input_func, query_emb, ref_emb=None, *args, **kwargs):
        """input_func(query_emb, ref_emb, ...), the query compared with itself when ref_emb is
        None."""
        ref_emb = query_emb if ref_emb is None else ref_emb
        return input_func(query_emb, ref_emb, *args, **kwargs)

    def is_close(self, values, threshold):
        threshold = self.get_threshold(threshold)
        return values >= threshold if self.distance.is_inverted else values <= threshold

    @torch.no_grad()
    def get_matching_pairs(self, query_emb, ref_emb=None, threshold=None, return_tuples=False):
        """(len(query), len(ref)) boolean numpy matrix, or the list of matching (i, j) pairs."""
        matches = self.is_close(self.distance(query_emb, ref_emb), threshold).cpu().numpy()
        if return_tuples:
            return list(zip(*np.where(matches)))
        return matches

    @torch.no_grad()
    def is_match(self, x, y, threshold=None):
        """Whether row i of x matches row i of y, as a boolean numpy array."""
        x, y = self.distance.maybe_normalize(x), self.distance.maybe_normalize(y)
        return self.is_close(self.distance.pairwise_distance(x, y), threshold).cpu().numpy()


class InferenceModel:
    """Embeds inputs with a trained trunk (+ embedder) and answers retrieval questions:
    nearest neighbours in an index (`train_knn`, `add_to_knn`, `get_nearest_neighbors`) and
    thresholded matches (`get_matches`, `is_match`, through a MatchFinder).

    Inputs are a tensor batch, a list of tensors, or a dataset whose items are tensors or
    (tensor, label, ...) tuples. Defaults: MatchFinder(CosineSimilarity(), threshold=0.9) and a
    persistent FaissKNN.
    """

    def __init__(
        self,
        trunk,
        embedder=None,
        match_finder=None,
        normalize_embeddings=True,
        knn_func=None,
        data_device=None,
        dtype=None,
    ):
        self.trunk = trunk
        self.embedder = torch.nn.Identity() if embedder is None else embedder
        self.match_finder = (
            MatchFinder(distance=CosineSimilarity(), threshold=0.9)
            if match_finder is None
            else match_finder
        )
        self.knn_func = (
            FaissKNN(reset_before=False, reset_after=False) if knn_func is None else knn_func
        )
        self.normalize_embeddings = normalize_embeddings
        self.data_device = (
            torch.device("cuda" if torch.cuda.is_available() else "cpu")
            if data_device is None
            else torch.device(data_device)
        )
        self.dtype = dtype

    @torch.no_grad()
    def get_embeddings(self, x):
        x = self.process_if_list(x)
        x = c_f.to_device(x, device=self.data_device, dtype=self.dtype)
        self.trunk.eval()
        self.embedder.eval()
        embeddings = self.embedder(self.trunk(x))
        if self.normalize_embeddings:
            embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
        return embeddings

    def process_if_list(self, x):
        return torch.stack(list(x)) if c_f.is_list_or_tuple(x) else x

    def get_embeddings_from_tensor_or_dataset(self, inputs, batch_size):
        inputs = self.process_if_list(inputs)
        if torch.is_tensor(inputs):
            batches = torch.split(inputs, batch_size)
        elif isinstance(inputs, torch.utils.data.Dataset):
            batches = (
                batch[0] if c_f.is_list_or_tuple(batch) else batch
                for batch in torch.utils.data.DataLoader(inputs, batch_size=batch_size)
            )
        else:
            raise TypeError(
                f"inputs must be a tensor, a list of tensors or a torch Dataset, got {type(inputs).__name__}."
            )
        return torch.cat([self.get_embeddings(batch) for batch in batches])

    def train_knn(self, inputs, batch_size=64):
        """Make `inputs` the search space of get_nearest_neighbors."""
        self.call_knn(self.knn_index_method("train"), inputs, batch_size)

    def add_to_knn(self, inputs, batch_size=64):
        self.call_knn(self.knn_index_method("add"), inputs, batch_size)

    def knn_index_method(self, name):
        if not hasattr(self.knn_func, name):
            raise TypeError(
                f"{type(self.knn_func).__name__} keeps no index; InferenceModel needs a knn_func "
                "with train/add such as FaissKNN(reset_before=False, reset_after=False)."
            )
        return getattr(self.knn_func, name)

    def call_knn(self, func, inputs, batch_size):
        func(self.get_embeddings_from_tensor_or_dataset(inputs, batch_size))

    def get_nearest_neighbors(self, query, k):
        """(distances, indices) of the k nearest indexed embeddings to each query input."""
        return self.knn_func(self.get_embeddings(query), k)

    def get_matches(self, query, ref=None, threshold=None, return_tuples=False):
        query_emb = self.get_embeddings(query)
        ref_emb = None if ref is None else self.get_embeddings(ref)
        return self.match_finder.get_matching_pairs(query_emb, ref_emb, threshold, return_tuples)

    def is_match(self, x, y, threshold=None):
        return self.match_finder.is_match(self.get_embeddings(x), self.get_embeddings(y), threshold)

    def save_knn_func(self, filename):
        self.knn_func.save(filename)

    def load_knn_func(self, filename):
        self.knn_func.load(filename)
