import torch

from ..reducers import AvgNonZeroReducer
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class TripletMarginLoss(BaseMetricLossFunction):
    """Triplet margin loss (Weinberger & Saul, JMLR 2009; Schroff et al., FaceNet, CVPR 2015).

    Per triplet (a, p, n): [d(a, p) - d(a, n) + margin]_+ (directions flip for similarities);
    `smooth_loss` uses log(1 + exp(.)) instead of the hinge, and `swap` (Balntas et al., BMVC
    2016) replaces d(a, n) by the closer of d(a, n) and d(p, n).
    """

    def __init__(
        self, margin=0.05, swap=False, smooth_loss=False, triplets_per_anchor="all", **kwargs
    ):
        super().__init__(**kwargs)
        if not (triplets_per_anchor == "all" or isinstance(triplets_per_anchor, int)):
            raise ValueError(
                f"triplets_per_anchor must be 'all' or an int, got {triplets_per_anchor!r}"
            )
        self.margin = margin
        self.swap = swap
        self.smooth_loss = smooth_loss
        self.triplets_per_anchor = triplets_per_anchor
        self.add_to_recordable_attributes(list_of_names=["margin"], is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=["avg_triplet_margin", "pos_pair_dist", "neg_pair_dist"], is_stat=True
        )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        ref_labels = None if same_set else ref_labels
        if indices_tuple is None and self.triplets_per_anchor == "all":
            mat, ref_mat = self.distance_matrices(embeddings, ref_emb, same_set)
            return self.all_triplets_loss(mat, ref_mat, labels, ref_labels)
        a, p, n = lmu.convert_to_triplets(
            indices_tuple, labels, ref_labels, t_per_anchor=self.triplets_per_anchor
        )
        if len(a) == 0:
            return self.zero_losses()
        mat, ref_mat = self.distance_matrices(embeddings, ref_emb, same_set)
        ap_dist = lmu.values_at(mat, a, p)
        an_dist = lmu.values_at(mat, a, n)
        if self.swap:
            an_dist = self.distance.smallest_dist(an_dist, lmu.values_at(ref_mat, p, n))
        self.record_triplet_stats(ap_dist, an_dist)
        return self.loss_dict(self.distance.margin(ap_dist, an_dist), (a, p, n))

    def all_triplets_loss(self, mat, ref_mat, labels, ref_labels):
        """Every valid triplet without gathering per-triplet distances: one row of
        anchor-to-reference distances per positive pair (#pos pairs × M), from which the
        violations of the valid triplets are picked by flat position."""
        pos_mask, neg_mask = lmu.get_matches_and_diffs(labels, ref_labels)
        a, p, pair_idx, n, flat_idx = lmu.triplets_of_pos_pairs(pos_mask, neg_mask)
        ap_dist = lmu.values_at(mat, a, p)
        an_dist = mat.index_select(0, a)
        if self.swap:
            an_dist = self.distance.smallest_dist(an_dist, ref_mat.index_select(0, p))
        violation = (
            self.distance.margin(ap_dist.unsqueeze(1), an_dist).flatten().index_select(0, flat_idx)
        )
        indices = (a.index_select(0, pair_idx), p.index_select(0, pair_idx), n)
        if self.collect_stats:
            self.record_triplet_stats(ap_dist[pair_idx], an_dist.flatten()[flat_idx])
        return self.loss_dict(violation, indices)

    def distance_matrices(self, embeddings, ref_emb, same_set):
        """Query-to-reference distances, and reference-to-reference ones when `swap` needs
        d(p, n) (the same matrix when the query batch is the reference set)."""
        mat = self.distance(embeddings, None if same_set else ref_emb)
        ref_mat = mat if same_set or not self.swap else self.distance(ref_emb)
        return mat, ref_mat

    def loss_dict(self, violation, indices):
        """`violation` is d(a, p) - d(a, n) per triplet (sign-flipped for similarities)."""
        violation = violation + self.margin
        losses = (
            torch.nn.functional.softplus(violation) if self.smooth_loss else torch.relu(violation)
        )
        return {"loss": {"losses": losses, "indices": indices, "reduction_type": "triplet"}}

    def record_triplet_stats(self, ap_dist, an_dist):
        if not self.collect_stats or len(ap_dist) == 0:
            return
        with torch.no_grad():
            self.pos_pair_dist = torch.mean(ap_dist).item()
            self.neg_pair_dist = torch.mean(an_dist).item()
            self.avg_triplet_margin = torch.mean(self.distance.margin(an_dist, ap_dist)).item()

    def get_default_reducer(self):
        return AvgNonZeroReducer()
