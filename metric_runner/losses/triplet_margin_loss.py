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
            uniform = same_set and not self.swap
            layout = lmu.UniformClassLayout.from_labels(labels) if uniform else None
            if layout is not None:
                return self.uniform_classes_loss(embeddings, layout)
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
        violation = self.pair_term(ap_dist) + self.neg_term_in_place(an_dist)
        return self.loss_dict(violation, (a, p, n))

    def uniform_classes_loss(self, embeddings, layout):
        """Every triplet of a batch whose classes have equal sizes, without index lists: the
        violations are one broadcast sum of a (positive pair) term and a (anchor, negative)
        term, laid out (anchor rank i, positive q, class g, negative)."""
        c, num_classes = layout.class_size, layout.num_classes
        negated = not self.distance.is_inverted
        same_class, neg_term = layout.split_by_class(
            layout.distance_matrix(self.distance, embeddings), negate_others=negated
        )
        ap_dist = same_class.flatten()[layout.pos_pair_positions()]
        if self.collect_stats:
            self.record_triplet_stats(ap_dist, -neg_term if negated else neg_term)
        violation = self.pair_term(ap_dist).unsqueeze(3) + neg_term.view(c, 1, num_classes, -1)
        shape = violation.shape

        def expand(pair_values):
            return pair_values.unsqueeze(3).expand(shape).flatten()

        indices = lmu.LazyIndexTuple(
            [
                lambda: expand(layout.pos_pairs()[0]),
                lambda: expand(layout.pos_pairs()[1]),
                lambda: layout.negatives().view(c, 1, num_classes, -1).expand(shape).flatten(),
            ],
            [violation.numel()] * 3,
            lexicographic=False,
        )
        return self.loss_dict(violation, indices)

    def all_triplets_loss(self, mat, ref_mat, labels, ref_labels):
        """Every valid triplet without gathering per-triplet distances: one row of
        anchor-to-reference distances per positive pair (#pos pairs × M), from which the
        violations of the valid triplets are picked by flat position."""
        pos_mask, neg_mask = lmu.get_matches_and_diffs(labels, ref_labels)
        a, p = torch.where(pos_mask)
        flat_idx = torch.nonzero(neg_mask.index_select(0, a).view(-1)).squeeze(1)
        ap_dist = lmu.values_at(mat, a, p)
        an_dist = mat.index_select(0, a)
        if self.swap:
            an_dist = self.distance.smallest_dist(an_dist, ref_mat.index_select(0, p))
        num_refs = mat.shape[1]
        if self.collect_stats:
            self.record_triplet_stats(ap_dist[flat_idx // num_refs], an_dist.flatten()[flat_idx])
        violation = self.pair_term(ap_dist.unsqueeze(1)) + self.neg_term_in_place(an_dist)
        violation = violation.flatten().index_select(0, flat_idx)
        indices = lmu.LazyIndexTuple(
            [
                lambda: a[flat_idx // num_refs],
                lambda: p[flat_idx // num_refs],
                lambda: flat_idx % num_refs,
            ],
            [len(flat_idx)] * 3,
        )
        return self.loss_dict(violation, indices)

    def distance_matrices(self, embeddings, ref_emb, same_set):
        """Query-to-reference distances, and reference-to-reference ones when `swap` needs
        d(p, n) (the same matrix when the query batch is the reference set)."""
        mat = self.distance(embeddings, None if same_set else ref_emb)
        ref_mat = mat if same_set or not self.swap else self.distance(ref_emb)
        return mat, ref_mat

    # The violation d(a, p) - d(a, n) + margin (s(a, n) - s(a, p) + margin for similarities)
    # is built as pair_term + neg_term: the margin goes to the smaller pair term, and a
    # broadcast sum has a cheaper backward than a broadcast difference.
    def pair_term(self, ap_dist):
        return self.margin - ap_dist if self.distance.is_inverted else ap_dist + self.margin

    def neg_term_in_place(self, an_dist):
        """Negates `an_dist` in place for distances: callers pass a tensor of their own."""
        return an_dist if self.distance.is_inverted else an_dist.neg_()

    def loss_dict(self, violation, indices):
        """`violation` is d(a, p) - d(a, n) + margin per triplet (sign-flipped for
        similarities), in any shape whose flattening matches `indices`; the hinge is applied in
        place, so it must be a tensor of the loss's own and not a view."""
        losses = torch.nn.functional.softplus(violation) if self.smooth_loss else violation.relu_()
        return {
            "loss": {
                "losses": losses.flatten(),
                "indices": indices,
                "reduction_type": "triplet",
            }
        }

    def record_triplet_stats(self, ap_dist, an_dist):
        """Means over the triplets, from distances given per triplet or, in the uniform
        layout, per positive pair and per anchor's negatives: every pair there has as many
        negatives and every anchor's negatives as many positives, so the means are the same."""
        if not self.collect_stats or ap_dist.numel() == 0 or an_dist.numel() == 0:
            return
        with torch.no_grad():
            pos_mean, neg_mean = torch.mean(ap_dist), torch.mean(an_dist)
            self.pos_pair_dist = pos_mean.item()
            self.neg_pair_dist = neg_mean.item()
            self.avg_triplet_margin = self.distance.margin(neg_mean, pos_mean).item()

    def get_default_reducer(self):
        return AvgNonZeroReducer()
