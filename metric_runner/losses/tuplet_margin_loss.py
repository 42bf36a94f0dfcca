import math

import torch

from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .generic_pair_loss import GenericPairLoss


class TupletMarginLoss(GenericPairLoss):
    """Tuplet margin loss (Yu & Tao, "Deep Metric Learning with Tuplet Margin Loss", ICCV 2019).

    Per positive pair (a, p): log(1 + Σ_n exp(s (cos θ_an − cos(θ_ap − β)))), summed over every
    negative pair of anchor a (a negative listed twice by a miner counts twice); β = `margin`
    in degrees, s = `scale`.
    """

    def __init__(self, margin=5.73, scale=64, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)
        c_f.assert_distance_type(self, CosineSimilarity)
        self.margin = math.radians(margin)
        self.scale = scale
        self.add_to_recordable_attributes(list_of_names=["margin", "scale"], is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=["avg_pos_angle", "avg_neg_angle"], is_stat=True
        )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        ref_labels = None if same_set else ref_labels
        if indices_tuple is None:
            pos_mask, neg_mask = lmu.get_matches_and_diffs(labels, ref_labels)
            a1, p = torch.where(pos_mask)
        else:
            a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        if len(a1) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings, None if same_set else ref_emb)
        if indices_tuple is None:
            neg_counts = neg_mask.to(mat.dtype)
        else:
            neg_counts = torch.zeros_like(mat, dtype=torch.float32).index_put_(
                (a2, n), torch.ones_like(n, dtype=torch.float32), accumulate=True
            )
        # Half precision cannot hold exp(64): the log-sum-exp runs in float32 at least.
        work = mat.float() if mat.dtype == torch.float16 else mat
        neg_lse, has_neg = self.per_anchor_neg_logsumexp(work, neg_counts.to(work.dtype))
        pos_cos = lmu.values_at(work, a1, p)
        pos_angle = torch.acos(self.interior_or_detached(pos_cos.clamp(-1, 1)))
        pos_logit = self.scale * torch.cos(pos_angle - self.margin)
        losses = torch.nn.functional.softplus(neg_lse[a1] - pos_logit) * has_neg[a1]
        self.record_angles(pos_cos, work, neg_counts)
        return {
            "loss": {
                "losses": losses.to(mat.dtype),
                "indices": (a1, p),
                "reduction_type": "pos_pair",
            }
        }

    def per_anchor_neg_logsumexp(self, mat, neg_counts):
        """log Σ_n count(a, n) exp(s cos θ_an) per anchor, and whether the anchor has any negative."""
        has_neg = neg_counts > 0
        logits = self.scale * mat + torch.log(neg_counts.clamp(min=1))
        logits = logits.masked_fill(~has_neg, c_f.neg_inf(mat.dtype))
        return torch.logsumexp(logits, dim=1), lmu.any_true(has_neg, dim=1)

    @staticmethod
    def interior_or_detached(cos):
        """acos has an infinite slope at ±1 (identical or opposite embeddings): there the
        positive angle contributes no gradient instead of NaN."""
        return torch.where(cos.abs() < 1, cos, cos.detach())

    def record_angles(self, pos_cos, mat, neg_counts):
        if not self.collect_stats:
            return
        with torch.no_grad():
            neg_counts = neg_counts.to(mat.dtype)
            neg_angle_sum = torch.sum(torch.acos(mat.clamp(-1, 1)) * neg_counts)
            self.avg_pos_angle = math.degrees(torch.acos(pos_cos.clamp(-1, 1)).mean().item())
            self.avg_neg_angle = math.degrees(
                (neg_angle_sum / neg_counts.sum().clamp(min=1)).item()
            )

    def get_default_distance(self):
        return CosineSimilarity()
