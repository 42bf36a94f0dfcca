import torch

from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from .base_metric_loss_function import BaseMetricLossFunction


class PNPLoss(BaseMetricLossFunction):
    """PNP loss (Li et al., "Rethinking the Optimization of Average Precision: Only Penalizing
    Negative Instances before Positive Ones is Enough", AAAI 2022).

    For query q and positive i (q itself included, as in the authors' code),
    R_i = Σ_{j negative} sigmoid((s_qj − s_qi) / anneal) counts the negatives ranked above i.
    Per query, the mean over positives of F(R): O: R; Iu: (1+R) log(1+R);
    Ib: (bR − log(1+bR)) / b²; Ds: log(1+R); Dq: 1 − (1+R)^−α. The loss averages queries
    that have another positive in the batch.
    """

    VARIANTS = ["Ds", "Dq", "Iu", "Ib", "O"]

    def __init__(self, b=2, alpha=1, anneal=0.01, variant="O", **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, CosineSimilarity)
        if variant not in self.VARIANTS:
            raise ValueError(f"variant={variant!r} but must be one of {self.VARIANTS}")
        self.b = b
        self.alpha = alpha
        self.anneal = anneal
        self.variant = variant

    def check_labels_available(self, labels, indices_tuple):
        if labels is None:
            raise ValueError("PNPLoss needs labels: each query's positives come from the labels.")

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if indices_tuple is not None:
            raise ValueError("PNPLoss does not support indices_tuple: it ranks the whole batch.")
        if ref_emb is not embeddings:
            raise ValueError("PNPLoss does not support ref_emb: it ranks the batch against itself.")
        pos_mask = labels.unsqueeze(1) == labels.unsqueeze(0)
        num_pos = pos_mask.sum(dim=1)
        is_query = num_pos > 1
        sims = self.distance(embeddings)
        # The sigmoid saturates in half precision; rank in float32 at least.
        work = sims.float() if sims.dtype == torch.float16 else sims
        query, positive = torch.where(pos_mask & is_query.unsqueeze(1))
        if len(query) == 0:
            return self.zero_losses()
        ranks = self.negatives_ranked_above(work, ~pos_mask, query, positive)
        per_pair = self.rank_penalty(ranks) / num_pos[query]
        per_query = torch.zeros(len(sims), dtype=work.dtype, device=work.device).index_add(
            0, query, per_pair
        )
        loss = torch.sum(per_query) / is_query.sum()
        if self.variant == "Dq":
            loss = 1 - loss
        return {
            "loss": {
                "losses": loss.to(sims.dtype),
                "indices": c_f.torch_arange_from_size(embeddings),
                "reduction_type": "already_reduced",
            }
        }

    def negatives_ranked_above(self, sims, neg_mask, query, positive):
        """R for each (query, positive) pair: one row of the query's similarities per pair, so
        the cost is #pairs × N rather than N × N × N."""
        pos_sims = sims[query, positive].unsqueeze(1)
        above = torch.sigmoid((sims.index_select(0, query) - pos_sims) / self.anneal)
        return torch.sum(above * neg_mask.index_select(0, query), dim=1)

    def rank_penalty(self, ranks):
        if self.variant == "O":
            return ranks
        if self.variant == "Iu":
            return (1 + ranks) * torch.log1p(ranks)
        if self.variant == "Ib":
            return (self.b * ranks - torch.log1p(self.b * ranks)) / self.b**2
        if self.variant == "Ds":
            return torch.log1p(ranks)
        return (1 + ranks) ** -self.alpha

    def get_default_distance(self):
        return CosineSimilarity()
