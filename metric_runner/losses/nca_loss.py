import torch

from ..distances import LpDistance
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class NCALoss(BaseMetricLossFunction):
    """Neighbourhood Components Analysis (Goldberger et al., NIPS 2004), per query i:
    −log Σ_{j: y_j = y_i} softmax_j(−softmax_scale · d_ij), the softmax over every other
    sample j ≠ i (over similarities instead of negated distances when larger means closer).
    """

    def __init__(self, softmax_scale=1, **kwargs):
        super().__init__(**kwargs)
        self.softmax_scale = softmax_scale
        self.add_to_recordable_attributes(name="softmax_scale", is_stat=False)

    def check_labels_available(self, labels, indices_tuple):
        if labels is None:
            raise ValueError(
                "NCALoss needs labels: each query's neighbours of its class come from the labels."
            )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        if indices_tuple is not None and not same_set:
            # Positives and negatives index the reference set: only the anchors are queries.
            indices_tuple = indices_tuple[0::2] if len(indices_tuple) == 4 else indices_tuple[:1]
        miner_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=embeddings.dtype)
        pos_mask, _ = lmu.get_matches_and_diffs(labels, None if same_set else ref_labels)
        pos_flat = torch.nonzero(pos_mask.view(-1)).squeeze(1)
        if len(pos_flat) == 0:
            return self.zero_losses()
        pos_rows = pos_flat // pos_mask.shape[1]
        # Row-major positions: each query's positives are consecutive, so this lists the
        # queries with a positive in order.
        query_idx = torch.unique_consecutive(pos_rows)
        mat = self.distance_matrix(embeddings, None if same_set else ref_emb)
        # Larger logit = closer: similarities enter as they are, distances negated.
        scale = self.softmax_scale if self.distance.is_inverted else -self.softmax_scale
        losses = _NCAQueryLosses.apply(mat, scale, same_set, pos_flat, pos_rows)
        losses = losses[query_idx] * miner_weights[query_idx]
        return {"loss": {"losses": losses, "indices": query_idx, "reduction_type": "element"}}

    def distance_matrix(self, embeddings, ref_emb):
        """The distance matrix, or, for squared Euclidean distances, the same matrix up to a
        constant per row, which the softmax over the row ignores: ||q_i − r_j||² − ||q_i||²
        = ||r_j||² − 2 q_i·r_j is one addmm, where the full formula costs four more passes
        over the (N, M) matrix and its gradient."""
        distance = self.distance
        squared_euclidean = type(distance) is LpDistance and distance.p == 2 and distance.power == 2
        if not squared_euclidean or distance.collect_stats:
            return distance(embeddings, ref_emb)
        query = distance.maybe_normalize(embeddings)
        ref = query if ref_emb is None else distance.maybe_normalize(ref_emb)
        return torch.addmm(ref.pow(2).sum(dim=1), query, ref.t(), alpha=-2)

    def get_default_distance(self):
        return LpDistance(power=2)


class _NCAQueryLosses(torch.autograd.Function):
    """Per query row i of the (N, M) distance matrix: log Σ_j exp(z_ij) − log Σ_{j positive}
    exp(z_ij), z = scale · mat with the diagonal excluded when the batch is its own reference
    set; rows without a positive give inf (callers keep only the others).

    The softmax runs in one (N, M) buffer: the logits become the exponentials in forward, and
    backward writes the gradient, g_i · scale · (softmax_ij − [j positive] softmax_ij over the
    positives), in one more. Autograd through log_softmax and a gather of the positives writes
    five such matrices. The positive term is a logsumexp over the positive-pair list, so it
    stays exact where every positive's softmax underflows.
    """

    @staticmethod
    def forward(ctx, mat, scale, exclude_diagonal, pos_flat, pos_rows):
        logits = (mat * scale).contiguous()  # positions below are row-major
        if exclude_diagonal:
            logits.fill_diagonal_(c_f.neg_inf(logits.dtype))
        pos_logits = logits.view(-1).index_select(0, pos_flat)
        row_max = logits.amax(dim=1, keepdim=True)
        exps = logits.sub_(row_max).exp_()
        row_sum = exps.sum(dim=1, keepdim=True)
        log_pos_sum = positive_logsumexp(pos_logits, pos_rows, len(mat))
        # The softmax over its row's positives of each positive pair.
        pos_share = torch.exp(pos_logits - log_pos_sum[pos_rows])
        ctx.scale = scale
        ctx.save_for_backward(exps, row_sum, pos_flat, pos_rows, pos_share)
        return (torch.log(row_sum) + row_max).squeeze(1) - log_pos_sum

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_losses):
        exps, row_sum, pos_flat, pos_rows, pos_share = ctx.saved_tensors
        grad_rows = grad_losses * ctx.scale
        grad = exps * (grad_rows.unsqueeze(1) / row_sum)
        grad.view(-1).index_add_(0, pos_flat, -grad_rows[pos_rows] * pos_share)
        return grad, None, None, None, None


def positive_logsumexp(pos_logits, pos_rows, num_rows):
    """log Σ exp over each row's positives (−inf for a row without any), from the flat list of
    positive logits and their rows."""
    row_max = pos_logits.new_full((num_rows,), c_f.neg_inf(pos_logits.dtype))
    row_max = row_max.scatter_reduce(0, pos_rows, pos_logits, reduce="amax")
    row_sum = torch.zeros_like(row_max).index_add(
        0, pos_rows, torch.exp(pos_logits - row_max[pos_rows])
    )
    return torch.log(row_sum) + row_max
