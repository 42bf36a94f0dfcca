import torch

from ..distances import LpDistance
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class FastAPLoss(BaseMetricLossFunction):
    """FastAP (Cakir et al., "Deep Metric Learning to Rank", CVPR 2019).

    Each query's distances to the rest of the batch go into a soft histogram with `num_bins`
    triangular bins over [0, 2^power]; FastAP_q = Σ_z h⁺(z) H⁺(z) / H(z) / N⁺_q (h: histogram,
    H: cumulative histogram, ⁺: positives only), and the loss is 1 − FastAP_q.
    """

    def __init__(self, num_bins=10, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, LpDistance, p=2, normalize_embeddings=True)
        self.num_bins = int(num_bins)
        if self.num_bins < 1:
            raise ValueError(f"num_bins must be a positive integer, got {num_bins}")
        self.num_edges = self.num_bins + 1  # the histogram's bin centers, PML's public name
        self.add_to_recordable_attributes(name="num_bins", is_stat=False)

    def check_labels_available(self, labels, indices_tuple):
        if labels is None:
            raise ValueError(
                "FastAPLoss needs labels: each query's positives come from the labels."
            )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if ref_emb is not embeddings:
            raise ValueError(
                "FastAPLoss does not support ref_emb: it ranks the batch against itself."
            )
        miner_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=embeddings.dtype)
        pos_mask = labels.unsqueeze(1) == labels.unsqueeze(0)
        num_pos = pos_mask.sum(dim=1) - 1  # the query itself is not its own positive
        (query_idx,) = torch.where(num_pos > 0)
        if len(query_idx) == 0:
            return self.zero_losses()
        h_pos, h_all = self.soft_histograms(self.distance(embeddings), pos_mask)
        cum_h_pos = torch.cumsum(h_pos, dim=1)
        cum_h_all = torch.cumsum(h_all, dim=1)
        # H = 0 only where h⁺ = H⁺ = 0 too; those bins contribute 0 (and no 0/0 gradient).
        nonzero = cum_h_all > 0
        ratio = h_pos * cum_h_pos / torch.where(nonzero, cum_h_all, torch.ones_like(cum_h_all))
        fast_ap = torch.sum(ratio * nonzero, dim=1) / num_pos.clamp(min=1)
        losses = (1 - fast_ap) * miner_weights
        return {
            "loss": {"losses": losses[query_idx], "indices": query_idx, "reduction_type": "element"}
        }

    def soft_histograms(self, dist_mat, pos_mask):
        """Positive and all-item histograms over num_bins + 1 equally spaced centers with the
        triangular kernel [1 − |d − z| / Δ]_+.

        Each distance only touches its two neighbouring centers, so both histograms come from
        two scatter-adds over the N×N matrix (no N×N×bins tensor): negatives, positives and the
        query itself go to three separate blocks of bins, the last one discarded.
        """
        num_centers = self.num_edges
        bin_width = 2**self.distance.power / self.num_bins
        position = (dist_mat / bin_width).clamp(0, self.num_bins)
        lower_bin = position.detach().floor().clamp(max=self.num_bins - 1)
        upper_weight = position - lower_bin
        block = pos_mask.long()
        block.fill_diagonal_(2)
        lower_index = lower_bin.long() + block * num_centers
        blocks = torch.zeros(
            len(dist_mat), 3 * num_centers, dtype=dist_mat.dtype, device=dist_mat.device
        )
        blocks = blocks.scatter_add(1, lower_index, 1 - upper_weight).scatter_add(
            1, lower_index + 1, upper_weight
        )
        h_neg, h_pos = blocks[:, :num_centers], blocks[:, num_centers : 2 * num_centers]
        return h_pos, h_neg + h_pos

    def get_default_distance(self):
        return LpDistance(power=2)
