import torch

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
            # All pairs located in the matrix (as CrossBatchMemory passes): no index arithmetic.
            mat = self.distance(embeddings, None if same_set else ref_emb)
            return self.all_pairs_loss(mat, indices_tuple)
        if indices_tuple is not None:
            return super().compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        layout = lmu.UniformClassLayout.from_labels(labels) if same_set else None
        if layout is not None:
            return self.uniform_classes_loss(embeddings, layout)
        pairs = lmu.all_pairs_of_labels(labels, None if same_set else ref_labels)
        mat = self.distance(embeddings, None if same_set else ref_emb)
        return self.all_pairs_loss(mat, pairs)

    def all_pairs_loss(self, mat, pairs):
        """The loss of every pair of an lmu.all_pairs_of_labels (or all_pairs_of_masks) tuple,
        picked from `mat` at its `flat_positions`, both hinges in one autograd step."""
        pos_loss, neg_loss = _PairHinges.apply(
            mat, *pairs.flat_positions, self.pos_margin, self.neg_margin, self.distance.is_inverted
        )
        return self.loss_dict(pos_loss, neg_loss, pairs)

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


class _PairHinges(torch.autograd.Function):
    """(pos_loss, neg_loss) = ([d - pos_margin]_+ at the positive pairs, [neg_margin - d]_+ at
    the negative pairs) of a distance matrix (directions flipped for similarities), the pairs
    located as lmu.pick_at reads them. The same numbers as distance.margin and relu on the
    picked values (-d + m rounds exactly as m - d), but computed in place on the picked copies,
    and backward writes relu's gradient straight into one matrix-sized buffer: as separate
    autograd steps, the margin, the relu and the pick each allocate a gradient of every pair,
    the negatives often a million of them."""

    @staticmethod
    def forward(ctx, mat, pos_where, neg_where, pos_margin, neg_margin, inverted):
        # For distances the positive hinge is d - m and the negative m - d; the reverse for
        # similarities. `negated` says which of the two is m - d.
        pos_loss = _hinge(lmu.pick_at(mat, pos_where), pos_margin, negated=inverted)
        neg_loss = _hinge(lmu.pick_at(mat, neg_where), neg_margin, negated=not inverted)
        # `mat` is kept anyway by the distance's own backward, so saving it costs nothing.
        ctx.save_for_backward(mat, pos_where, neg_where, pos_loss, neg_loss)
        ctx.pos_negated, ctx.neg_negated, ctx.neg_margin = inverted, not inverted, neg_margin
        return pos_loss, neg_loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pos, grad_neg):
        mat, pos_where, neg_where, pos_loss, neg_loss = ctx.saved_tensors
        grad = torch.zeros_like(mat, memory_format=torch.contiguous_format)
        if mat.dtype in EXACT_COMPARISON_DTYPES:
            lmu.put_at_(grad, neg_where, grad_neg)
            grad.masked_fill_(_inactive(mat, ctx.neg_margin, ctx.neg_negated), 0)
            if ctx.neg_negated:
                grad.neg_()
        else:
            lmu.put_at_(grad, neg_where, _relu_gradient(neg_loss, grad_neg, ctx.neg_negated))
        # Written last: the masking and negation above run over the whole matrix.
        lmu.put_at_(grad, pos_where, _relu_gradient(pos_loss, grad_pos, ctx.pos_negated))
        return grad, None, None, None, None, None


# In these dtypes the hinge m - d (or d - m) is rounded once from the exact difference of two
# numbers of the dtype, so it is <= 0 exactly when d >= m (d <= m); in half precision it is
# computed in float32 and rounded to half, and can round to 0 where d < m.
EXACT_COMPARISON_DTYPES = (torch.float32, torch.float64)


def _hinge(values, margin, negated):
    """[margin - values]_+ if negated else [values - margin]_+, in place."""
    if negated:
        return values.neg_().add_(margin).relu_()
    return values.sub_(margin).relu_()


def _inactive(mat, margin, negated):
    """Where the hinge of `mat` is <= 0, read off the matrix: one boolean per entry, where
    comparing the hinge values costs a boolean and a gradient copy per pair."""
    return mat >= margin if negated else mat <= margin


def _relu_gradient(loss, grad_loss, negated):
    """The gradient of a hinge with respect to the values it was computed from: relu passes the
    gradient wherever its output is not <= 0 (a NaN included), and m - d flips its sign."""
    passed = torch.where(loss <= 0, 0, grad_loss)
    return passed.neg_() if negated else passed
