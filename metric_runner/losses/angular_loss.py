import math

import torch

from ..distances import LpDistance
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class AngularLoss(BaseMetricLossFunction):
    """Angular loss (Wang et al., "Deep Metric Learning with Angular Loss", ICCV 2017).

    For each positive pair (a, p) and every negative n (a label different from a's), on
    L2-normalized embeddings: f_apn = 4 tan²α (x_a + x_p)ᵀ x_n − 2 (1 + tan²α) x_aᵀ x_p,
    and the pair's loss is log(1 + Σ_n exp f_apn). `alpha` is in degrees.
    """

    def __init__(self, alpha=40, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, LpDistance, p=2, power=1, normalize_embeddings=True)
        self.alpha = torch.tensor(math.radians(alpha), dtype=torch.float64)
        self.add_to_recordable_attributes(name="alpha", is_stat=False)
        self.add_to_recordable_attributes(name="average_angle", is_stat=True)

    def check_labels_available(self, labels, indices_tuple):
        if labels is None:
            raise ValueError(
                "AngularLoss needs labels: the negatives of each pair are all samples with another "
                "label, even when indices_tuple is given."
            )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        anchor_idx, positive_idx = positive_pairs(
            labels, indices_tuple, None if same_set else ref_labels
        )
        if len(anchor_idx) == 0:
            return self.zero_losses()
        queries = self.distance.normalize(embeddings)
        refs = queries if same_set else self.distance.normalize(ref_emb)
        anchors, positives = queries[anchor_idx], refs[positive_idx]
        sq_tan_alpha = math.tan(self.alpha) ** 2
        anchor_dot_positive = torch.sum(anchors * positives, dim=1, keepdim=True)
        # f_apn for every pair and every reference in one GEMM: (#pos pairs × M), no triplet list.
        logits = torch.addmm(
            -2 * (1 + sq_tan_alpha) * anchor_dot_positive,
            anchors + positives,
            refs.t(),
            alpha=4 * sq_tan_alpha,
        )
        same_label = labels[anchor_idx].unsqueeze(1) == ref_labels.unsqueeze(0)
        # log(1 + Σ_n exp f) = softplus(logsumexp f); a pair without negatives gives softplus(≈ −inf) = 0.
        neg_lse = torch.logsumexp(logits.masked_fill(same_label, c_f.neg_inf(logits.dtype)), dim=1)
        losses = torch.nn.functional.softplus(neg_lse)
        if self.collect_stats:
            self.set_average_angle(anchors, positives, refs, anchor_dot_positive, ~same_label)
        return {
            "loss": {
                "losses": losses,
                "indices": (anchor_idx, positive_idx),
                "reduction_type": "pos_pair",
            }
        }

    @torch.no_grad()
    def set_average_angle(self, anchors, positives, refs, anchor_dot_positive, neg_mask):
        """Mean angle at the negative, atan(|x_a − x_p| / (2 |x_n − x_c|)) with x_c the pair's
        center, in degrees; |x_n − x_c|² is expanded so no (pair, negative, dim) tensor is built."""
        pair_sum_dot_refs = torch.matmul(anchors + positives, refs.t())
        center_sq_norm = (2 + 2 * anchor_dot_positive) / 4
        neg_to_center = (1 - pair_sum_dot_refs + center_sq_norm).clamp(min=0).sqrt()
        half_pair_dist = torch.norm(anchors - positives, dim=1, keepdim=True) / 2
        angles = torch.atan(half_pair_dist / neg_to_center)[neg_mask]
        self.average_angle = math.degrees(angles.mean().item()) if len(angles) > 0 else 0


def positive_pairs(labels, indices_tuple, ref_labels):
    """The (anchor, positive) pairs: all same-label pairs, or those of a pair/triplet tuple."""
    if indices_tuple is None:
        matches, _ = lmu.get_matches_and_diffs(labels, ref_labels)
        return torch.where(matches)
    anchor_idx, positive_idx, _, _ = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
    return anchor_idx, positive_idx
