import torch

from ..distances import CosineSimilarity
from ..reducers import AvgNonZeroReducer
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .generic_pair_loss import GenericPairLoss


class CircleLoss(GenericPairLoss):
    """Circle loss (Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity
    Optimization", CVPR 2020), per anchor on cosine similarities s:

    log(1 + Σ_n exp(γ α_n (s_n − Δ_n)) Σ_p exp(−γ α_p (s_p − Δ_p))), with α_p = [1 + m − s_p]_+,
    α_n = [s_n + m]_+ (constants for the gradient), Δ_p = 1 − m and Δ_n = m.
    """

    def __init__(self, m=0.4, gamma=80, **kwargs):
        super().__init__(mat_based_loss=True, **kwargs)
        c_f.assert_distance_type(self, CosineSimilarity)
        self.m = m
        self.gamma = gamma
        self.op = 1 + m
        self.on = -m
        self.delta_p = 1 - m
        self.delta_n = m
        self.add_to_recordable_attributes(
            list_of_names=["m", "gamma", "op", "on", "delta_p", "delta_n"], is_stat=False
        )

    def _compute_loss(self, mat, pos_mask, neg_mask):
        detached = mat.detach()
        alpha_p = torch.relu(self.op - detached)
        alpha_n = torch.relu(detached - self.on)
        logit_p = -self.gamma * alpha_p * (mat - self.delta_p)
        logit_n = self.gamma * alpha_n * (mat - self.delta_n)
        lse_p = lmu.logsumexp(logit_p, keep_mask=pos_mask, add_one=False)
        lse_n = lmu.logsumexp(logit_n, keep_mask=neg_mask, add_one=False)
        losses = torch.nn.functional.softplus(lse_p + lse_n)
        # An anchor needs both a positive and a negative to have a loss.
        has_both = lmu.any_true(pos_mask, dim=1) & lmu.any_true(neg_mask, dim=1)
        return {
            "loss": {
                "losses": losses.squeeze(1) * has_both,
                "indices": c_f.torch_arange_from_size(mat),
                "reduction_type": "element",
            }
        }

    def get_default_reducer(self):
        return AvgNonZeroReducer()

    def get_default_distance(self):
        return CosineSimilarity()
