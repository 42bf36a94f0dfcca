import torch

from ..reducers import AvgNonZeroReducer
from .generic_pair_loss import GenericPairLoss


class ContrastiveLoss(GenericPairLoss):
    """Contrastive loss (Hadsell, Chopra & LeCun, CVPR 2006).

    Positive pairs: [d - pos_margin]_+ ; negative pairs: [neg_margin - d]_+ (directions flip
    for similarities). Each half is a sub-loss with its own reducer.
    """

    def __init__(self, pos_margin=0, neg_margin=1, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.add_to_recordable_attributes(list_of_names=["pos_margin", "neg_margin"], is_stat=False)

    def _compute_loss(self, pos_pair_dist, neg_pair_dist, indices_tuple):
        a1, p, a2, n = indices_tuple
        pos_loss = torch.relu(self.distance.margin(pos_pair_dist, self.pos_margin))
        neg_loss = torch.relu(self.distance.margin(self.neg_margin, neg_pair_dist))
        return {
            "pos_loss": {"losses": pos_loss, "indices": (a1, p), "reduction_type": "pos_pair"},
            "neg_loss": {"losses": neg_loss, "indices": (a2, n), "reduction_type": "neg_pair"},
        }

    def get_default_reducer(self):
        return AvgNonZeroReducer()

    def _sub_loss_names(self):
        return ["pos_loss", "neg_loss"]
