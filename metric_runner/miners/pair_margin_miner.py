import torch

from ..utils import loss_and_miner_utils as lmu
from .base_miner import BaseMiner


class PairMarginMiner(BaseMiner):
    """Pairs that violate a contrastive margin (Hadsell et al., CVPR 2006): positives farther
    than `pos_margin` and negatives closer than `neg_margin` ("farther" and "closer" follow the
    distance, so similarities work too). Returns pairs (a1, p, a2, n).
    """

    def __init__(self, pos_margin=0.2, neg_margin=0.8, **kwargs):
        super().__init__(**kwargs)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.add_to_recordable_attributes(list_of_names=["pos_margin", "neg_margin"], is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=["pos_pair_dist", "neg_pair_dist"], is_stat=True
        )

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        mat = self.distance(embeddings, ref_emb)
        pos_mask, neg_mask = lmu.get_matches_and_diffs(
            labels, self.ref_labels_or_none(embeddings, ref_emb, ref_labels)
        )
        if self.collect_stats:
            self.set_stats(mat, pos_mask, neg_mask)
        # margin(x, y) > 0 means x is farther than y.
        a1, p = torch.where(pos_mask & (self.distance.margin(mat, self.pos_margin) > 0))
        a2, n = torch.where(neg_mask & (self.distance.margin(self.neg_margin, mat) > 0))
        return a1, p, a2, n

    def set_stats(self, mat, pos_mask, neg_mask):
        """Mean distance over every positive and every negative pair, before selection."""
        if pos_mask.any():
            self.pos_pair_dist = mat[pos_mask].mean().item()
        if neg_mask.any():
            self.neg_pair_dist = mat[neg_mask].mean().item()
