import torch

from ..distances import CosineSimilarity
from .generic_pair_loss import GenericPairLoss


class IntraPairVarianceLoss(GenericPairLoss):
    """Intra-pair variance loss (Yu & Tao, "Deep Metric Learning with Tuplet Margin Loss",
    ICCV 2019).

    With μ⁺, μ⁻ the mean positive and negative similarities of the batch (gradients flow
    through them): [(1 − ε⁺) μ⁺ − s_ap]_+² per positive pair and [s_an − (1 + ε⁻) μ⁻]_+² per
    negative pair. For distances (smaller = closer) both inequalities and ε signs flip.
    """

    def __init__(self, pos_eps=0.01, neg_eps=0.01, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)
        self.pos_eps = pos_eps
        self.neg_eps = neg_eps
        self.add_to_recordable_attributes(list_of_names=["pos_eps", "neg_eps"], is_stat=False)

    def _compute_loss(self, pos_pair_dist, neg_pair_dist, indices_tuple):
        a1, p, a2, n = indices_tuple
        # A similarity should stay above (1 - ε⁺)μ⁺; a distance below (1 + ε⁺)μ⁺.
        pos_factor = 1 - self.pos_eps if self.distance.is_inverted else 1 + self.pos_eps
        neg_factor = 1 + self.neg_eps if self.distance.is_inverted else 1 - self.neg_eps
        pos_loss = self.squared_violation(pos_pair_dist, pos_factor * torch.mean(pos_pair_dist))
        neg_loss = self.squared_violation(neg_factor * torch.mean(neg_pair_dist), neg_pair_dist)
        return {
            "pos_loss": {"losses": pos_loss, "indices": (a1, p), "reduction_type": "pos_pair"},
            "neg_loss": {"losses": neg_loss, "indices": (a2, n), "reduction_type": "neg_pair"},
        }

    def squared_violation(self, farther, closer):
        """[how much `farther` is farther than `closer`]_+²."""
        return torch.relu(self.distance.margin(farther, closer)) ** 2

    def _sub_loss_names(self):
        return ["pos_loss", "neg_loss"]

    def get_default_distance(self):
        return CosineSimilarity()
