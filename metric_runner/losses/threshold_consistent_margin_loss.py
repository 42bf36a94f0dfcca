import torch

from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class ThresholdConsistentMarginLoss(BaseMetricLossFunction):
    """Threshold-consistent margin loss (Zhang et al., "Threshold-Consistent Margin Loss for
    Open-World Deep Metric Learning", ICLR 2024).

    λ⁺ Σ [m⁺ − s_ap]_+ / #{s_ap < m⁺} + λ⁻ Σ [s_an − m⁻]_+ / #{s_an > m⁻}: the mean violation
    of the positive pairs less similar than m⁺ and of the negative pairs more similar than m⁻
    (a miner's repeated pairs count once per repetition).
    """

    def __init__(
        self, lambda_plus=1.0, lambda_minus=1.0, margin_plus=0.9, margin_minus=0.5, **kwargs
    ):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, CosineSimilarity)
        self.lambda_plus = lambda_plus
        self.lambda_minus = lambda_minus
        self.margin_plus = margin_plus
        self.margin_minus = margin_minus

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        sims = self.distance(embeddings, None if same_set else ref_emb)
        # Half precision cannot count N² pairs; the sums run in float32 at least.
        sims = sims.float() if sims.dtype == torch.float16 else sims
        pos_counts, neg_counts = self.pair_counts(
            labels, indices_tuple, None if same_set else ref_labels, sims
        )
        pos_term = self.mean_violation(torch.relu(self.margin_plus - sims), pos_counts)
        neg_term = self.mean_violation(torch.relu(sims - self.margin_minus), neg_counts)
        loss = (self.lambda_plus * pos_term + self.lambda_minus * neg_term).to(embeddings.dtype)
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}

    @staticmethod
    def pair_counts(labels, indices_tuple, ref_labels, sims):
        """How many times each (anchor, reference) pair is a positive and a negative pair."""
        if indices_tuple is None:
            pos_mask, neg_mask = lmu.get_matches_and_diffs(labels, ref_labels)
            return pos_mask.to(sims.dtype), neg_mask.to(sims.dtype)
        a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        pos_counts = torch.zeros_like(sims).index_put_(
            (a1, p), torch.ones_like(a1, dtype=sims.dtype), accumulate=True
        )
        neg_counts = torch.zeros_like(sims).index_put_(
            (a2, n), torch.ones_like(a2, dtype=sims.dtype), accumulate=True
        )
        return pos_counts, neg_counts

    @staticmethod
    def mean_violation(violation, counts):
        """Σ counted violations / how many of them are nonzero (0 when none are)."""
        num_violating = torch.sum(counts * (violation > 0))
        return torch.sum(counts * violation) / num_violating.clamp(min=1)

    def get_default_distance(self):
        return CosineSimilarity()
