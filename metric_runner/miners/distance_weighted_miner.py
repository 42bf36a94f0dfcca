import torch

from ..utils import loss_and_miner_utils as lmu
from .angular_miner import check_euclidean_distance
from .base_miner import BaseMiner


class DistanceWeightedMiner(BaseMiner):
    """Distance-weighted sampling (Wu et al., "Sampling Matters in Deep Embedding Learning",
    ICCV 2017).

    On the unit sphere in R^n, pairwise distances have density
    q(d) ∝ d^(n-2) (1 - d²/4)^((n-3)/2); negatives are drawn with probability ∝ 1/q(d), with
    d clipped below at `cutoff` and zero weight for d >= `nonzero_loss_cutoff`. Each anchor
    draws as many random (positive, negative) triplets as its class has members. Returns
    triplets (a, p, n).
    """

    def __init__(self, cutoff=0.5, nonzero_loss_cutoff=1.4, **kwargs):
        super().__init__(**kwargs)
        check_euclidean_distance(self.distance, type(self).__name__)
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.add_to_recordable_attributes(
            list_of_names=["cutoff", "nonzero_loss_cutoff"], is_stat=False
        )

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        ref_labels_or_none = self.ref_labels_or_none(embeddings, ref_emb, ref_labels)
        mat = self.distance(embeddings, ref_emb)
        _, neg_mask = lmu.get_matches_and_diffs(labels, ref_labels_or_none)
        weights = self.negative_weights(mat, neg_mask, embeddings.shape[1])
        return lmu.get_random_triplet_indices(labels, ref_labels_or_none, weights=weights)

    def negative_weights(self, mat, neg_mask, dim):
        """Unnormalized 1/q(d) per pair, zero where a pair cannot be a useful negative."""
        # Low precision would overflow: d^(2-n) spans hundreds of orders of magnitude.
        dist = mat.to(torch.promote_types(mat.dtype, torch.float32)).clamp(min=self.cutoff)
        one_minus_quarter_sq = (1 - 0.25 * dist**2).clamp(min=torch.finfo(dist.dtype).tiny)
        log_weights = (2.0 - dim) * torch.log(dist) - ((dim - 3) / 2) * torch.log(
            one_minus_quarter_sq
        )
        keep = neg_mask & (mat < self.nonzero_loss_cutoff)
        log_weights = log_weights.masked_fill(~keep, float("-inf"))
        # Subtracting each row's max keeps exp() in range; rows with nothing kept stay zero.
        row_max = log_weights.amax(dim=1, keepdim=True).clamp(min=torch.finfo(dist.dtype).min)
        return torch.exp(log_weights - row_max)
