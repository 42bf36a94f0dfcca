import torch

from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .generic_pair_loss import GenericPairLoss


class GeneralizedLiftedStructureLoss(GenericPairLoss):
    """Generalized lifted structure loss (Hermans et al., "In Defense of the Triplet Loss for
    Person Re-Identification", 2017, after Oh Song et al., CVPR 2016), per anchor:

    [log Σ_p exp(d_ap − pos_margin) + log Σ_n exp(neg_margin − d_an)]_+ (sign-flipped for
    similarities, where larger means closer).
    """

    def __init__(self, neg_margin=1, pos_margin=0, **kwargs):
        super().__init__(mat_based_loss=True, **kwargs)
        self.neg_margin = neg_margin
        self.pos_margin = pos_margin
        self.add_to_recordable_attributes(list_of_names=["pos_margin", "neg_margin"], is_stat=False)

    def _compute_loss(self, mat, pos_mask, neg_mask):
        pos_terms = self.distance.margin(mat, self.pos_margin)
        neg_terms = self.distance.margin(self.neg_margin, mat)
        pos_lse = lmu.logsumexp(pos_terms, keep_mask=pos_mask, add_one=False)
        neg_lse = lmu.logsumexp(neg_terms, keep_mask=neg_mask, add_one=False)
        return {
            "loss": {
                "losses": torch.relu(pos_lse + neg_lse).squeeze(1),
                "indices": c_f.torch_arange_from_size(mat),
                "reduction_type": "element",
            }
        }
