import torch

from ..utils import loss_and_miner_utils as lmu
from .base_miner import BaseMiner

TRIPLET_TYPES = ("all", "hard", "semihard", "easy")


class TripletMarginMiner(BaseMiner):
    """Triplets selected by their margin m = d_an - d_ap (s_ap - s_an for similarities), as in
    FaceNet (Schroff et al., CVPR 2015).

    "easy": m > margin; "all": m <= margin; "hard": m <= 0; "semihard": 0 < m <= margin.
    Returns triplets (a, p, n).
    """

    def __init__(self, margin=0.2, type_of_triplets="all", **kwargs):
        super().__init__(**kwargs)
        if type_of_triplets not in TRIPLET_TYPES:
            raise ValueError(
                f"type_of_triplets must be one of {TRIPLET_TYPES}, got {type_of_triplets!r}"
            )
        self.margin = margin
        self.type_of_triplets = type_of_triplets
        self.add_to_recordable_attributes(name="margin", is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=["avg_triplet_margin", "pos_pair_dist", "neg_pair_dist"], is_stat=True
        )

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        mat = self.distance(embeddings, ref_emb)
        pos_mask, neg_mask = lmu.get_matches_and_diffs(
            labels, self.ref_labels_or_none(embeddings, ref_emb, ref_labels)
        )
        # One row per positive pair against every reference: #pos pairs × M, never N×M×M.
        a, p = torch.where(pos_mask)
        ap_dist = mat[a, p].unsqueeze(1)
        an_dist = mat[a]
        triplet_margin = self.distance.margin(an_dist, ap_dist)
        keep = neg_mask[a] & self.selected(triplet_margin)
        pair_idx, n = torch.where(keep)
        if self.collect_stats:
            self.set_stats(ap_dist.squeeze(1), an_dist, triplet_margin, neg_mask[a])
        return a[pair_idx], p[pair_idx], n

    def selected(self, triplet_margin):
        if self.type_of_triplets == "easy":
            return triplet_margin > self.margin
        within_margin = triplet_margin <= self.margin
        if self.type_of_triplets == "hard":
            return within_margin & (triplet_margin <= 0)
        if self.type_of_triplets == "semihard":
            return within_margin & (triplet_margin > 0)
        return within_margin

    def set_stats(self, ap_dist, an_dist, triplet_margin, valid):
        """Averages over every triplet of the batch, before selection."""
        num_triplets = valid.sum()
        if num_triplets == 0:
            return
        counts_per_pair = valid.sum(dim=1)
        self.pos_pair_dist = ((ap_dist * counts_per_pair).sum() / num_triplets).item()
        self.neg_pair_dist = (an_dist[valid].sum() / num_triplets).item()
        self.avg_triplet_margin = (triplet_margin[valid].sum() / num_triplets).item()
