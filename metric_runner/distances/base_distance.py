import abc

import torch

from ..utils.module_with_records import ModuleWithRecords
from .l2_normalize import l2_normalize_rows


class BaseDistance(ModuleWithRecords, abc.ABC):
    """A (Nq, Nr) matrix of distances or similarities between query and reference rows.

    `is_inverted` is True for similarities (larger = closer). Losses ask the distance which
    direction is closer (`margin`, `smallest_dist`, `largest_dist`) instead of assuming one.
    """

    def __init__(self, normalize_embeddings=True, p=2, power=1, is_inverted=False, **kwargs):
        super().__init__(**kwargs)
        self.normalize_embeddings = normalize_embeddings
        self.p = p
        self.power = power
        self.is_inverted = is_inverted
        self.add_to_recordable_attributes(list_of_names=["p", "power"], is_stat=False)

    def forward(self, query_emb, ref_emb=None):
        self.reset_stats()
        self.check_shapes(query_emb, ref_emb)
        query_normalized = self.maybe_normalize(query_emb)
        ref_normalized = query_normalized if ref_emb is None else self.maybe_normalize(ref_emb)
        self.set_default_stats(query_emb, ref_emb, query_normalized, ref_normalized)
        return self.compute_powered_mat(query_normalized, ref_normalized)

    def compute_powered_mat(self, query_emb, ref_emb):
        """compute_mat raised to `power`; a subclass may fuse the two."""
        mat = self.compute_mat(query_emb, ref_emb)
        return mat if self.power == 1 else mat**self.power

    @abc.abstractmethod
    def compute_mat(self, query_emb, ref_emb):
        """The full (Nq, Nr) matrix of already-normalized rows; each subclass defines its formula."""

    def pairwise_distance(self, query_emb, ref_emb):
        """Distance between row i of query_emb and row i of ref_emb, for every i (rows are used
        as given: no normalization, no power).

        Optional, as in PML: a distance that defines only compute_mat is complete for every
        loss and miner that works on the matrix; this raises only when a caller needs it."""
        raise NotImplementedError(
            f"{type(self).__name__} defines no pairwise_distance(query_emb, ref_emb), the "
            "row-by-row distance that this caller needs; define it in the subclass."
        )

    def smallest_dist(self, *args, **kwargs):
        """The 'closest' value: max for similarities, min for distances."""
        return torch.max(*args, **kwargs) if self.is_inverted else torch.min(*args, **kwargs)

    def largest_dist(self, *args, **kwargs):
        return torch.min(*args, **kwargs) if self.is_inverted else torch.max(*args, **kwargs)

    def margin(self, x, y):
        """How much farther x is than y (positive when y is the closer one)."""
        return y - x if self.is_inverted else x - y

    def normalize(self, embeddings, dim=1, **kwargs):
        if self.p == 2 and dim == 1 and not kwargs:
            return l2_normalize_rows(embeddings)
        return torch.nn.functional.normalize(embeddings, p=self.p, dim=dim, **kwargs)

    def maybe_normalize(self, embeddings, dim=1, **kwargs):
        return (
            self.normalize(embeddings, dim=dim, **kwargs)
            if self.normalize_embeddings
            else embeddings
        )

    def get_norm(self, embeddings, dim=1, **kwargs):
        return torch.linalg.vector_norm(embeddings, ord=self.p, dim=dim, **kwargs)

    def check_shapes(self, query_emb, ref_emb):
        """The built-in distances take 2-D (N, embedding_size) rows; a subclass whose formula
        takes other shapes overrides this check."""
        for name, emb in (("query_emb", query_emb), ("ref_emb", ref_emb)):
            if emb is not None and emb.ndim != 2:
                raise ValueError(f"{name} must be 2D (N, embedding_size), got {tuple(emb.shape)}")
        if ref_emb is not None and ref_emb.shape[1] != query_emb.shape[1]:
            raise ValueError(
                f"query_emb and ref_emb have different embedding sizes "
                f"({query_emb.shape[1]} vs {ref_emb.shape[1]})"
            )

    def set_default_stats(self, query_emb, ref_emb, query_normalized, ref_normalized):
        if not self.collect_stats:
            return
        ref_emb = query_emb if ref_emb is None else ref_emb
        with torch.no_grad():
            self.initial_avg_query_norm = torch.mean(self.get_norm(query_emb)).item()
            self.initial_avg_ref_norm = torch.mean(self.get_norm(ref_emb)).item()
            self.final_avg_query_norm = torch.mean(self.get_norm(query_normalized)).item()
            self.final_avg_ref_norm = torch.mean(self.get_norm(ref_normalized)).item()

    def reset_stats(self):
        super().reset_stats()
        if self.collect_stats:
            self.add_to_recordable_attributes(
                list_of_names=[
                    "initial_avg_query_norm",
                    "initial_avg_ref_norm",
                    "final_avg_query_norm",
                    "final_avg_ref_norm",
                ],
                is_stat=True,
            )
