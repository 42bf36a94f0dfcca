import torch

from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .generalized_lifted_structure_loss import GeneralizedLiftedStructureLoss
from .generic_pair_loss import GenericPairLoss

# PML defines both classes in this module; GeneralizedLiftedStructureLoss lives in its own.
__all__ = ["GeneralizedLiftedStructureLoss", "LiftedStructureLoss"]


class LiftedStructureLoss(GenericPairLoss):
    """Lifted structured loss (Oh Song et al., "Deep Metric Learning via Lifted Structured
    Feature Embedding", CVPR 2016), per positive pair (i, j):

    J_ij = log(Σ_{(i,k) neg} exp(neg_margin − d_ik) + Σ_{(j,l) neg} exp(neg_margin − d_jl))
    + d_ij − pos_margin, loss = [J_ij]_+² / 2 (sign-flipped for similarities).

    The negatives of a pair are the negative pairs anchored at i or at j. With ref_emb the
    positive j is a reference sample, which anchors no negative pair, so only i's count.
    compute_loss is overridden: it needs both the pair list and the whole matrix.
    """

    def __init__(self, neg_margin=1, pos_margin=0, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)
        self.neg_margin = neg_margin
        self.pos_margin = pos_margin
        self.add_to_recordable_attributes(list_of_names=["pos_margin", "neg_margin"], is_stat=False)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        indices_tuple = lmu.convert_to_pairs(
            indices_tuple, labels, None if same_set else ref_labels
        )
        anchor_idx, positive_idx, _, _ = indices_tuple
        if len(anchor_idx) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings, None if same_set else ref_emb)
        # Per-row log Σ exp over negatives: a pair's sum is then a log-add of two rows, so the
        # cost is N×M instead of one masked N×M matrix per positive pair. A negative pair listed
        # several times (triplets sharing it) counts that many times.
        anchor_neg_idx, negative_idx = indices_tuple[2:]
        neg_counts = torch.zeros_like(mat).index_put_(
            (anchor_neg_idx, negative_idx),
            torch.ones_like(negative_idx, dtype=mat.dtype),
            accumulate=True,
        )
        neg_mask = neg_counts > 0
        neg_terms = self.distance.margin(self.neg_margin, mat) + torch.log(neg_counts)
        row_neg_lse = torch.logsumexp(
            neg_terms.masked_fill(~neg_mask, c_f.neg_inf(mat.dtype)), dim=1
        )
        row_has_neg = lmu.any_true(neg_mask, dim=1)
        neg_lse, pair_has_neg = row_neg_lse[anchor_idx], row_has_neg[anchor_idx]
        if same_set:
            # A pair (i, i) counts i's negatives once.
            use_positive_row = row_has_neg[positive_idx] & (positive_idx != anchor_idx)
            positive_lse = row_neg_lse[positive_idx].masked_fill(
                ~use_positive_row, c_f.neg_inf(mat.dtype)
            )
            neg_lse = torch.logaddexp(neg_lse, positive_lse)
            pair_has_neg = pair_has_neg | use_positive_row
        # As in logsumexp elsewhere, an empty set of negatives contributes 0.
        neg_lse = neg_lse * pair_has_neg
        pos_terms = self.distance.margin(mat[anchor_idx, positive_idx], self.pos_margin)
        losses = torch.relu(neg_lse + pos_terms) ** 2 / 2
        return {
            "loss": {
                "losses": losses,
                "indices": (anchor_idx, positive_idx),
                "reduction_type": "pos_pair",
            }
        }
