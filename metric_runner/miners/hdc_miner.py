import math

import torch

from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_miner import BaseMiner


class HDCMiner(BaseMiner):
    """The hard-pair filter of Hard-Aware Deeply Cascaded embedding (Yuan et al., ICCV 2017):
    keeps the hardest `filter_percentage` (rounded up) of the positive pairs (the farthest) and
    of the negative pairs (the closest).

    The pool is every pair of the batch, or the tuples given to `set_idx_externally`; an
    external pool is replaced by what each call keeps, so successive calls cascade (each
    keeps the hardest part of the previous result) until `reset_idx`. Returns pairs
    (a1, p, a2, n).
    """

    def __init__(self, filter_percentage=0.5, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= filter_percentage <= 1:
            raise ValueError(
                f"filter_percentage is the fraction of pairs kept and must be in [0, 1], "
                f"got {filter_percentage}"
            )
        self.filter_percentage = filter_percentage
        self.add_to_recordable_attributes(name="filter_percentage", is_stat=False)
        self.reset_idx()

    def set_idx_externally(self, external_indices_tuple, labels):
        """Mine from these pairs or triplets (triplets become their pairs) instead of all pairs."""
        self.a1, self.p, self.a2, self.n = lmu.convert_to_pairs(external_indices_tuple, labels)
        self.was_set_externally = True

    def reset_idx(self):
        self.a1, self.p, self.a2, self.n = None, None, None, None
        self.was_set_externally = False

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        mat = self.distance(embeddings, ref_emb)
        if self.was_set_externally:
            return self.mine_external_pool(mat, embeddings)
        pairs = lmu.all_pairs_of_labels(
            labels, self.ref_labels_or_none(embeddings, ref_emb, ref_labels)
        )
        pos_where, neg_where = pairs.flat_positions
        # Pairs as positions in the flattened matrix, in row-major order (PML's order): only
        # the kept ones are turned into (row, column) indices.
        a1, p = self.hardest_pairs(mat, pos_where, hardest_is_farthest=True)
        a2, n = self.hardest_pairs(mat, neg_where, hardest_is_farthest=False)
        return a1, p, a2, n

    def mine_external_pool(self, mat, embeddings):
        a1, p, a2, n = c_f.to_device((self.a1, self.p, self.a2, self.n), embeddings)
        kept_pos = self.hardest(lmu.values_at(mat, a1, p), hardest_is_farthest=True)
        kept_neg = self.hardest(lmu.values_at(mat, a2, n), hardest_is_farthest=False)
        self.a1, self.p = a1.index_select(0, kept_pos), p.index_select(0, kept_pos)
        self.a2, self.n = a2.index_select(0, kept_neg), n.index_select(0, kept_neg)
        return self.a1, self.p, self.a2, self.n

    def hardest_pairs(
        self, mat: torch.Tensor, where: torch.Tensor, hardest_is_farthest: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, columns) of the hardest entries of `mat` at `where` (flat positions or a
        boolean mask, as lmu.pick_at takes them), hardest first."""
        if where.dtype == torch.bool:
            where = torch.nonzero(where.view(-1)).squeeze(1)
        kept = self.hardest(lmu.pick_at(mat, where), hardest_is_farthest)
        positions = where.index_select(0, kept)
        num_cols = mat.shape[1]
        # The rows go into the top-k indices' buffer and the columns into the positions': at
        # half a million pairs, fresh tensors and a remainder cost more than the division.
        rows = torch.div(positions, num_cols, rounding_mode="floor", out=kept)
        return rows, positions.sub_(rows, alpha=num_cols)

    def hardest(self, values, hardest_is_farthest):
        """Positions of the hardest `filter_percentage` (rounded up) of `values`, hardest first.
        torch.topk over the pairs in row-major order, as PML, so ties at the cut keep the same
        pairs as PML's."""
        num_kept = math.ceil(len(values) * self.filter_percentage)
        largest = hardest_is_farthest != self.distance.is_inverted
        return torch.topk(values, num_kept, largest=largest).indices
