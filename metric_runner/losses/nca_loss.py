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
        (query_idx,) = torch.where(pos_mask.any(dim=1))
        if len(query_idx) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings, None if same_set else ref_emb)
        logits = (
            mat * self.softmax_scale if self.distance.is_inverted else mat * -self.softmax_scale
        )
        if same_set:
            logits.fill_diagonal_(c_f.neg_inf(logits.dtype))
        # −log Σ_pos softmax, as a logsumexp of log-softmax values: exact even where every
        # positive's softmax underflows. It runs over the positive-pair list, not a second N×M matrix.
        log_probs = torch.log_softmax(logits, dim=1)
        losses = -positive_logsumexp(log_probs, pos_mask, query_idx) * miner_weights[query_idx]
        return {"loss": {"losses": losses, "indices": query_idx, "reduction_type": "element"}}

    def get_default_distance(self):
        return LpDistance(power=2)


def positive_logsumexp(logits, pos_mask, query_idx):
    """log Σ_{j positive} exp(logits[i, j]) for each row i in query_idx (rows with a positive)."""
    pair_row, pair_col = torch.where(pos_mask)
    pos_logits = logits[pair_row, pair_col]
    row_max = torch.full_like(logits[:, 0], c_f.neg_inf(logits.dtype))
    row_max = row_max.scatter_reduce(0, pair_row, pos_logits.detach(), reduce="amax")
    row_sum = torch.zeros_like(row_max).index_add(
        0, pair_row, torch.exp(pos_logits - row_max[pair_row])
    )
    return torch.log(row_sum[query_idx]) + row_max[query_idx]
