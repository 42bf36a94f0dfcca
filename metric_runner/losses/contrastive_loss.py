from ..reducers import AvgNonZeroReducer
from ..utils import loss_and_miner_utils as lmu
from .generic_pair_loss import GenericPairLoss


class ContrastiveLoss(GenericPairLoss):
    """Contrastive loss (Hadsell, Chopra & LeCun, CVPR 2006).

    Positive pairs: [d - pos_margin]_+ ; negative pairs: [neg_margin - d]_+ (directions flip
    for similarities). Each half is a sub-loss with its own reducer.
    """

    def __init__(self, pos_margin=0, neg_margin=1, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.add_to_recordable_attributes(list_of_names=["pos_margin", "neg_margin"], is_stat=False)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        if getattr(indices_tuple, "flat_positions", None) is not None:
            # All pairs of masks (as CrossBatchMemory passes): no index arithmetic needed.
            mat = self.distance(embeddings, None if same_set else ref_emb)
            return self._compute_loss(*lmu.pair_values(mat, indices_tuple), indices_tuple)
        if indices_tuple is not None:
            return super().compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        layout = lmu.UniformClassLayout.from_labels(labels) if same_set else None
        if layout is not None:
            return self.uniform_classes_loss(embeddings, layout)
        pairs = lmu.all_pairs_of_labels(labels, None if same_set else ref_labels)
        mat = self.distance(embeddings, None if same_set else ref_emb)
        return self._compute_loss(*lmu.pair_values(mat, pairs), pairs)

    def uniform_classes_loss(self, embeddings, layout):
        """All pairs of a batch whose classes have equal sizes, without index lists: the
        negative pairs are the other-class entries of the layout's matrix, and their losses
        are computed in place."""
        negated = not self.distance.is_inverted
        same_class, other_class = layout.split_by_class(
            layout.distance_matrix(self.distance, embeddings), negate_others=negated
        )
        pos_pair_dist = same_class.flatten()[layout.pos_pair_positions().flatten()]
        # margin(neg_margin, d) = neg_margin - d for distances, d - neg_margin for similarities
        neg_loss = other_class.add_(self.neg_margin if negated else -self.neg_margin).relu_()
        num_negatives = other_class.shape[1]
        indices = lmu.LazyIndexTuple(
            [
                lambda: layout.pos_pairs()[0].flatten(),
                lambda: layout.pos_pairs()[1].flatten(),
                lambda: layout.row_order.repeat_interleave(num_negatives),
                lambda: layout.negatives().flatten(),
            ],
            [len(pos_pair_dist)] * 2 + [neg_loss.numel()] * 2,
            lexicographic=False,
        )
        return self.loss_dict(self.pos_loss(pos_pair_dist), neg_loss.flatten(), indices)

    def _compute_loss(self, pos_pair_dist, neg_pair_dist, indices_tuple):
        # The margin gives a tensor of its own, so the hinge can be applied in place.
        neg_loss = self.distance.margin(self.neg_margin, neg_pair_dist).relu_()
        return self.loss_dict(self.pos_loss(pos_pair_dist), neg_loss, indices_tuple)

    def pos_loss(self, pos_pair_dist):
        return self.distance.margin(pos_pair_dist, self.pos_margin).relu_()

    def loss_dict(self, pos_loss, neg_loss, indices_tuple):
        return {
            "pos_loss": {
                "losses": pos_loss,
                "indices": indices_tuple[:2],
                "reduction_type": "pos_pair",
            },
            "neg_loss": {
                "losses": neg_loss,
                "indices": indices_tuple[2:],
                "reduction_type": "neg_pair",
            },
        }

    def get_default_reducer(self):
        return AvgNonZeroReducer()

    def _sub_loss_names(self):
        return ["pos_loss", "neg_loss"]
