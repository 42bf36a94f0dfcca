import torch

from .base_reducer import BaseReducer
from .mean_reducer import MeanReducer


def aggregation_func(per_anchor_sum, num_per_anchor):
    """Default: the mean over each anchor's tuples (zero for anchors without any)."""
    return per_anchor_sum / num_per_anchor.clamp(min=1)


class PerAnchorReducer(BaseReducer):
    """Groups pair/triplet losses by anchor, aggregates each group, then reduces the
    per-anchor values with `reducer` as element losses."""

    def __init__(self, reducer=None, aggregation_func=aggregation_func, **kwargs):
        super().__init__(**kwargs)
        self.reducer = MeanReducer() if reducer is None else reducer
        self.aggregation_func = aggregation_func

    def element_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.reduce_per_anchor(losses, loss_indices, embeddings, labels)

    def reduce_per_anchor(self, losses, anchor_indices, embeddings, labels):
        num_anchors = len(embeddings)
        per_anchor_sum = torch.zeros(num_anchors, dtype=losses.dtype, device=losses.device)
        per_anchor_sum = per_anchor_sum.index_add(0, anchor_indices, losses)
        counts = torch.zeros(num_anchors, dtype=losses.dtype, device=losses.device)
        counts = counts.index_add(0, anchor_indices, torch.ones_like(losses))
        per_anchor = self.aggregation_func(per_anchor_sum, counts)
        anchors = torch.arange(num_anchors, device=losses.device)
        loss_dict = {"loss": {"losses": per_anchor, "indices": anchors, "reduction_type": "element"}}
        return self.reducer(loss_dict, embeddings, labels)

    def pos_pair_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.reduce_per_anchor(losses, loss_indices[0], embeddings, labels)

    neg_pair_reduction = pos_pair_reduction
    triplet_reduction = pos_pair_reduction
