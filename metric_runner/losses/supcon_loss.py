import torch

from ..distances import CosineSimilarity
from ..reducers import AvgNonZeroReducer
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .generic_pair_loss import GenericPairLoss


class SupConLoss(GenericPairLoss):
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020).

    Per anchor i with positives P(i) and negatives N(i):
    -1/|P(i)| sum_{p in P(i)} log(exp(s_ip / t) / sum_{k in P(i) ∪ N(i)} exp(s_ik / t)).
    Anchors without positives get 0, and so does a batch without any positive or any negative
    pair. With a distance d instead of a similarity, s = -d.
    """

    def __init__(self, temperature=0.1, **kwargs):
        super().__init__(mat_based_loss=True, **kwargs)
        self.temperature = temperature
        self.add_to_recordable_attributes(name="temperature", is_stat=False)

    def _compute_loss(self, mat, pos_mask, neg_mask):
        logits = (mat if self.distance.is_inverted else -mat) / self.temperature
        log_denominator = lmu.logsumexp(logits, keep_mask=pos_mask | neg_mask, add_one=False)
        log_prob = logits - log_denominator
        pos_log_prob_sum = torch.where(pos_mask, log_prob, 0).sum(dim=1)
        num_pos = pos_mask.sum(dim=1).clamp(min=1).to(logits.dtype)
        # Without any negative pair there is nothing to contrast: the loss is 0, as in PML. A
        # device-side factor keeps this free of a host sync.
        has_both = lmu.any_true(pos_mask) & lmu.any_true(neg_mask)
        losses = -pos_log_prob_sum / num_pos * has_both
        return {
            "loss": {
                "losses": losses,
                "indices": c_f.torch_arange_from_size(mat),
                "reduction_type": "element",
            }
        }

    def get_default_reducer(self):
        return AvgNonZeroReducer()

    def get_default_distance(self):
        return CosineSimilarity()
