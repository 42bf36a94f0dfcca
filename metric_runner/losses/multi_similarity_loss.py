from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .generic_pair_loss import GenericPairLoss


class MultiSimilarityLoss(GenericPairLoss):
    """Multi-similarity loss (Wang et al., CVPR 2019).

    Per anchor: 1/alpha log(1 + sum_pos exp(-alpha (s - base)))
              + 1/beta  log(1 + sum_neg exp(beta (s - base))),
    with s a similarity; for a distance the signs flip (through `distance.margin`).
    """

    def __init__(self, alpha=2, beta=50, base=0.5, **kwargs):
        super().__init__(mat_based_loss=True, **kwargs)
        self.alpha = alpha
        self.beta = beta
        self.base = base
        self.add_to_recordable_attributes(list_of_names=["alpha", "beta", "base"], is_stat=False)

    def _compute_loss(self, mat, pos_mask, neg_mask):
        pos_exponent = self.alpha * self.distance.margin(mat, self.base)
        neg_exponent = self.beta * self.distance.margin(self.base, mat)
        pos_loss = lmu.logsumexp(pos_exponent, keep_mask=pos_mask, add_one=True) / self.alpha
        neg_loss = lmu.logsumexp(neg_exponent, keep_mask=neg_mask, add_one=True) / self.beta
        return {
            "loss": {
                "losses": (pos_loss + neg_loss).squeeze(1),
                "indices": c_f.torch_arange_from_size(mat),
                "reduction_type": "element",
            }
        }

    def get_default_distance(self):
        return CosineSimilarity()
