import torch

from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from ..utils.errors import InvalidArgumentError
from .base_metric_loss_function import BaseMetricLossFunction

# Added once per column to each weighted average's denominator.
ROW_SMOOTHING = 1e-5


class RankedListLoss(BaseMetricLossFunction):
    """Ranked list loss (Wang et al., "Ranked List Loss for Deep Metric Learning", CVPR 2019).

    Per anchor: (1 − λ) L_P + λ L_N, where L_P averages d_ij − (α − m) over the positives farther
    than α − m with weights exp(T_p (d_ij − (α − m))), and L_N averages α − d_ik over the
    negatives closer than α with weights exp(T_n (α − d_ik)). λ = `imbalance`, m = `margin`,
    α defaults to 1 + m / 2.
    """

    def __init__(self, margin, Tn, imbalance=0.5, alpha=None, Tp=0, **kwargs):
        super().__init__(**kwargs)
        if self.distance.is_inverted:
            raise InvalidArgumentError(
                f"RankedListLoss needs a distance where smaller means closer (e.g. LpDistance()), "
                f"got the similarity {type(self.distance).__name__}: its thresholds alpha and "
                "alpha - margin are distances. (PML accepts a similarity here, but its loss then "
                "pushes positives apart and pulls negatives together.)"
            )
        if not 0 <= imbalance <= 1:
            raise InvalidArgumentError(
                f"RankedListLoss needs imbalance (the weight of the negatives' term, lambda) in "
                f"[0, 1], got {imbalance}: outside it one term is weighted negatively."
            )
        self.margin = margin
        self.Tn = Tn
        self.imbalance = imbalance
        self.alpha = 1 + margin / 2 if alpha is None else alpha
        self.Tp = Tp
        self.add_to_recordable_attributes(
            list_of_names=["imbalance", "alpha", "margin", "Tp", "Tn"], is_stat=False
        )

    def check_labels_available(self, labels, indices_tuple):
        if labels is None:
            raise InvalidArgumentError(
                "RankedListLoss needs labels: each anchor's ranked list comes from them."
            )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if indices_tuple is not None:
            raise InvalidArgumentError(
                "RankedListLoss does not support indices_tuple: it ranks the whole batch."
            )
        if ref_emb is not embeddings:
            raise InvalidArgumentError(
                "RankedListLoss does not support ref_emb: it ranks the batch against itself."
            )
        pos_mask, neg_mask = lmu.get_matches_and_diffs(labels)
        dist = self.distance(embeddings)
        pos_violation = dist - (self.alpha - self.margin)
        neg_violation = self.alpha - dist
        pos_loss = self.weighted_mean_violation(
            pos_violation, pos_mask & (pos_violation > 0), self.Tp
        )
        neg_loss = self.weighted_mean_violation(
            neg_violation, neg_mask & (neg_violation > 0), self.Tn
        )
        losses = (1 - self.imbalance) * pos_loss + self.imbalance * neg_loss
        indices = c_f.torch_arange_from_size(embeddings)
        return {"loss": {"losses": losses, "indices": indices, "reduction_type": "element"}}

    @staticmethod
    def weighted_mean_violation(violation, mask, temperature):
        """Σ w v / (Σ w + 1e-5 · #columns) over the masked entries of each row, w = exp(T v).

        The small constant (PML's) makes rows with nothing masked give 0. Every weight is
        divided by the row's largest one first, so large temperatures cannot overflow.
        """
        smoothing = ROW_SMOOTHING * violation.shape[1]
        if temperature == 0:  # the paper's default for positives: plain averages
            weights = mask.to(violation.dtype)
        else:
            logits = (temperature * violation).masked_fill(~mask, c_f.neg_inf(violation.dtype))
            row_max = logits.amax(dim=1, keepdim=True).detach().clamp(min=0)
            weights = torch.exp(logits - row_max)  # exactly 0 where masked
            smoothing = smoothing * torch.exp(-row_max.squeeze(1))
        return torch.sum(weights * violation, dim=1) / (torch.sum(weights, dim=1) + smoothing)
