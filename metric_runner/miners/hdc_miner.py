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
        if not self.was_set_externally:
            # Masks rather than index lists of every pair: far less memory.
            pos_mask, neg_mask = lmu.get_matches_and_diffs(
                labels, self.ref_labels_or_none(embeddings, ref_emb, ref_labels)
            )
            a1, p = torch.where(self.hardest(mat, pos_mask, hardest_is_farthest=True))
            a2, n = torch.where(self.hardest(mat, neg_mask, hardest_is_farthest=False))
            return a1, p, a2, n
        a1, p, a2, n = c_f.to_device((self.a1, self.p, self.a2, self.n), embeddings)
        kept_pos = self.hardest(mat[a1, p], None, hardest_is_farthest=True)
        kept_neg = self.hardest(mat[a2, n], None, hardest_is_farthest=False)
        self.a1, self.p, self.a2, self.n = a1[kept_pos], p[kept_pos], a2[kept_neg], n[kept_neg]
        return self.a1, self.p, self.a2, self.n

    def hardest(self, values, valid, hardest_is_farthest):
        """Boolean mask, shaped like `values`, of the hardest `filter_percentage` (rounded up)
        of the entries allowed by `valid` (all when None); ties go to the first in order."""
        candidates = values
        if valid is not None:
            candidates = values.reshape(-1)[torch.nonzero(valid.view(-1)).squeeze(1)]
        num_kept = math.ceil(len(candidates) * self.filter_percentage)
        if num_kept == len(candidates):
            return torch.ones_like(values, dtype=torch.bool) if valid is None else valid
        if num_kept == 0:
            return torch.zeros_like(values, dtype=torch.bool)
        largest = hardest_is_farthest != self.distance.is_inverted
        # A selection (O(n)) instead of topk's partial sort: keep everything strictly beyond
        # the num_kept-th hardest value, then as many of the values equal to it as needed.
        rank = len(candidates) - num_kept + 1 if largest else num_kept
        threshold = torch.kthvalue(candidates, rank).values
        del candidates
        beyond = values > threshold if largest else values < threshold
        ties = values == threshold
        if valid is not None:
            beyond &= valid
            ties &= valid
        tie_rank = ties.view(-1).cumsum(0, dtype=torch.int32).view_as(ties)
        return beyond | (ties & (tie_rank <= num_kept - beyond.sum()))
