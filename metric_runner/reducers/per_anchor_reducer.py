import torch

from ..utils.errors import UnsupportedInputError
from .base_reducer import BaseReducer
from .mean_reducer import MeanReducer


def aggregation_func(x, num_per_row):
    """The mean of each anchor's pair losses: row sums of the (N, N) pair-loss matrix `x` over
    `num_per_row` pairs (zero-valued pairs count; anchors without pairs give 0)."""
    return torch.sum(x, dim=1) / num_per_row.clamp(min=1)


class PerAnchorReducer(BaseReducer):
    """Reduces pair losses per anchor first: v_a = aggregation_func over the pairs of anchor a
    (mean by default), then `reducer` reduces the N values v_a as element losses.

    The pairs are laid out in an (N, N) matrix (row = anchor, column = the other element, N =
    len(embeddings)), so the other indices must index the batch itself and a repeated pair
    counts once; `aggregation_func(x, num_per_row)` receives that matrix and the number of
    pairs per row. Element losses go to `reducer` unchanged.
    """

    def __init__(self, reducer=None, aggregation_func=aggregation_func, **kwargs):
        super().__init__(**kwargs)
        self.reducer = MeanReducer() if reducer is None else reducer
        self.aggregation_func = aggregation_func

    def element_reduction(self, losses, loss_indices, embeddings, labels):
        loss_dict = {
            "loss": {"losses": losses, "indices": loss_indices, "reduction_type": "element"}
        }
        return self.reducer(loss_dict, embeddings, labels)

    def tuple_reduction_helper(self, losses, loss_indices, embeddings, labels):
        anchors, others = loss_indices
        num_rows = len(embeddings)
        pair_losses = torch.zeros(num_rows, num_rows, dtype=losses.dtype, device=losses.device)
        pair_losses = pair_losses.index_put((anchors, others), losses)
        has_pair = torch.zeros(num_rows, num_rows, dtype=torch.bool, device=losses.device)
        has_pair[anchors, others] = True
        per_anchor = self.aggregation_func(pair_losses, has_pair.sum(dim=1))
        anchor_indices = torch.arange(num_rows, device=losses.device)
        return self.element_reduction(per_anchor, anchor_indices, embeddings, labels)

    def pos_pair_reduction(self, losses, loss_indices, embeddings, labels):
        return self.tuple_reduction_helper(losses, loss_indices, embeddings, labels)

    neg_pair_reduction = pos_pair_reduction

    def triplet_reduction(self, losses, loss_indices, embeddings, labels):
        raise UnsupportedInputError(
            "PerAnchorReducer reduces element and pair losses, not triplet losses; "
            "use it with a pair loss, or reduce triplets with e.g. AvgNonZeroReducer."
        )
