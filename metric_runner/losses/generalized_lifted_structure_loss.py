import torch
from torch.autograd.function import once_differentiable

from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .generic_pair_loss import GenericPairLoss


class GeneralizedLiftedStructureLoss(GenericPairLoss):
    """Generalized lifted structure loss (Hermans et al., "In Defense of the Triplet Loss for
    Person Re-Identification", 2017, after Oh Song et al., CVPR 2016), per anchor:

    [log Σ_p exp(d_ap − pos_margin) + log Σ_n exp(neg_margin − d_an)]_+ (sign-flipped for
    similarities, where larger means closer).
    """

    def __init__(self, neg_margin=1, pos_margin=0, **kwargs):
        super().__init__(mat_based_loss=True, **kwargs)
        self.neg_margin = neg_margin
        self.pos_margin = pos_margin
        self.add_to_recordable_attributes(list_of_names=["pos_margin", "neg_margin"], is_stat=False)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None,
        indices_tuple: tuple | None,
        ref_emb: torch.Tensor,
        ref_labels: torch.Tensor | None,
    ) -> dict:
        same_set = ref_emb is embeddings
        if indices_tuple is None:
            # All pairs: the few positives located by a sort of the labels, the negatives
            # kept as a mask, so no N×M positive mask is built or scanned.
            indices_tuple = lmu.all_pairs_of_labels(labels, None if same_set else ref_labels)
        elif getattr(indices_tuple, "flat_positions", None) is None:
            return super().compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        # All pairs located in the matrix (also as CrossBatchMemory passes them).
        mat = self.distance(embeddings, None if same_set else ref_emb)
        return self._compute_loss(mat, *indices_tuple.flat_positions)

    def _compute_loss(self, mat, pos_where, neg_where):
        """`pos_where` and `neg_where` locate the pairs in `mat` as lmu.pick_at takes them."""
        # Terms sign * mat + offset: margin(mat, pos_margin) and margin(neg_margin, mat).
        sign = -1.0 if self.distance.is_inverted else 1.0
        pos_lse, neg_lse = _RowLogSumExps.apply(
            mat,
            pos_where,
            neg_where,
            (sign, -sign * self.pos_margin),
            (-sign, sign * self.neg_margin),
        )
        return {
            "loss": {
                "losses": torch.relu(pos_lse + neg_lse),
                "indices": c_f.torch_arange_from_size(mat),
                "reduction_type": "element",
            }
        }


class _RowLogSumExps(torch.autograd.Function):
    """Per row of `mat`, log Σ exp(sign * mat + offset) over the entries at `pos_where`, and
    with its own (sign, offset) at `neg_where` (0 for a row without entries), in one autograd
    step: the backward scales the softmax weights saved by the forward, so the masked
    log-sum-exp's N×M intermediates are neither kept nor differentiated one by one."""

    @staticmethod
    def forward(ctx, mat, pos_where, neg_where, pos_terms, neg_terms):
        pos_lse, pos_weights = _row_log_sum_exp(mat, pos_where, *pos_terms)
        neg_lse, neg_weights = _row_log_sum_exp(mat, neg_where, *neg_terms)
        ctx.save_for_backward(pos_where, neg_where, pos_weights, neg_weights)
        ctx.signs, ctx.num_cols = (pos_terms[0], neg_terms[0]), mat.shape[1]
        return pos_lse, neg_lse

    @staticmethod
    @once_differentiable
    def backward(ctx, pos_grad, neg_grad):
        pos_where, neg_where, pos_weights, neg_weights = ctx.saved_tensors
        # d lse / d mat = sign * softmax weight; the dense (mask) part first, as the buffer.
        grad = _add_weighted(None, neg_where, neg_weights, neg_grad * ctx.signs[1], ctx.num_cols)
        grad = _add_weighted(grad, pos_where, pos_weights, pos_grad * ctx.signs[0], ctx.num_cols)
        return grad, None, None, None, None


def _row_log_sum_exp(mat, where, sign, offset):
    """(per-row log Σ exp(sign * mat + offset) over `where`, 0 for a row without entries;
    the softmax weights: an N×M matrix, zero off the mask, when `where` is a mask, one weight
    per position otherwise). The exponentials are computed in the weights' buffer."""
    if where.dtype == torch.bool:
        # Off-mask entries become -inf, whose exp is 0.
        weights = torch.where(where, mat, -sign * torch.inf)
        if sign < 0:
            weights.neg_()
        row_max = torch.amax(weights, dim=1)
        shift, is_empty = _finite_shift(row_max)
        weights.sub_(shift.unsqueeze(1)).exp_()
        total = weights.sum(dim=1).masked_fill_(is_empty, 1)
        weights.div_(total.unsqueeze(1))
    else:
        rows = where // mat.shape[1]
        weights = lmu.pick_at(mat, where) * sign
        row_max = weights.new_full((mat.shape[0],), -torch.inf)
        row_max.scatter_reduce_(0, rows, weights, reduce="amax")
        shift, is_empty = _finite_shift(row_max)
        weights.sub_(shift[rows]).exp_()
        total = torch.zeros_like(shift).index_add_(0, rows, weights).masked_fill_(is_empty, 1)
        weights.div_(total[rows])
    lse = torch.log(total) + shift + offset
    return lse.masked_fill_(is_empty, 0), weights


def _finite_shift(row_max):
    """The rows' maxima with 0 for rows without entries (max -inf), and which rows those are."""
    is_empty = row_max == -torch.inf
    return row_max.masked_fill(is_empty, 0), is_empty


def _add_weighted(grad, where, weights, row_grad, num_cols):
    """grad + row_grad[row] * weights at `where` (a new N×M tensor where grad is None)."""
    if where.dtype == torch.bool:
        scaled = weights * row_grad.unsqueeze(1)
        return scaled if grad is None else grad.add_(scaled)
    if grad is None:
        grad = weights.new_zeros((len(row_grad), num_cols))
    grad.view(-1).index_add_(0, where, weights * row_grad[where // num_cols])
    return grad
