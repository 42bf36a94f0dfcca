import torch

from ..distances import LpDistance
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class DynamicSoftMarginLoss(BaseMetricLossFunction):
    """Dynamic soft margin loss (Zhang & Rusinkiewicz, "Learning Local Descriptors with a
    CDF-Based Dynamic Soft Margin", ICCV 2019).

    For each triplet, Δ = d(a, p) − d(a, n); the loss is mean(F(Δ) Δ), where F is the empirical
    CDF of Δ from a histogram over `num_bins` nodes spanning [min_val, −min_val], updated each
    call as h ← normalize((1 − momentum) h + momentum · batch counts). The triplets come from
    the labels or `indices_tuple`; without either, row i of embeddings and of ref_emb are a
    positive pair whose negative is the closest other row or column (the paper's
    descriptor-matching setting). The paper pairs N descriptors with N; with more rows on one
    side we keep its rule for the first min(N, M) pairs and let the extra rows serve as
    negatives only. PML gives another number there (README, "Differences from PML").
    """

    def __init__(self, min_val=-2.0, num_bins=10, momentum=0.01, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, LpDistance, normalize_embeddings=True, p=2)
        if num_bins < 2 or min_val >= 0:
            raise ValueError(
                f"DynamicSoftMarginLoss needs num_bins >= 2 and min_val < 0 (the histogram spans "
                f"[min_val, -min_val]); got num_bins={num_bins}, min_val={min_val}."
            )
        self.min_val = min_val
        self.num_bins = num_bins
        self.momentum = momentum
        self.delta = -2 * min_val / num_bins
        self.register_buffer("hist_", torch.zeros(num_bins))
        self.add_to_recordable_attributes(name="num_bins", is_stat=False)

    def check_labels_available(self, labels, indices_tuple):
        """Neither labels nor indices_tuple is needed: without them the descriptor-matching
        pairs are used."""

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        dist = self.distance(embeddings, None if same_set else ref_emb)
        if labels is None and indices_tuple is None:
            deltas = self.matching_pair_deltas(dist)
        else:
            deltas = self.triplet_deltas(
                dist, labels, indices_tuple, None if same_set else ref_labels
            )
        if len(deltas) == 0:
            return self.zero_losses()
        # Millions of triplets overflow half-precision counts; histogram in float32 at least.
        work = deltas.float() if deltas.dtype == torch.float16 else deltas
        cdf_weights = self.update_histogram_and_read_cdf(work)
        loss = torch.mean(cdf_weights * work).to(deltas.dtype)
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}

    @staticmethod
    def matching_pair_deltas(dist):
        """d(x_i, y_i) minus the closest non-matching distance in row i or column i."""
        size = min(dist.shape)
        pos = torch.diagonal(dist)[:size]
        off_diagonal = dist.clone()
        off_diagonal.diagonal().fill_(c_f.pos_inf(dist.dtype))
        row_min = off_diagonal.min(dim=1).values[:size]
        col_min = off_diagonal.min(dim=0).values[:size]
        return pos - torch.minimum(row_min, col_min)

    @staticmethod
    def triplet_deltas(dist, labels, indices_tuple, ref_labels):
        if indices_tuple is None:
            # Every triplet, as the valid entries of one anchor row per positive pair.
            pos_mask, neg_mask = lmu.get_matches_and_diffs(labels, ref_labels)
            a, p, _, _, flat_idx = lmu.triplets_of_pos_pairs(pos_mask, neg_mask)
            ap_dist = lmu.values_at(dist, a, p).unsqueeze(1)
            return (ap_dist - dist.index_select(0, a)).flatten().index_select(0, flat_idx)
        a, p, n = lmu.convert_to_triplets(indices_tuple, labels, ref_labels, t_per_anchor="all")
        return lmu.values_at(dist, a, p) - lmu.values_at(dist, a, n)

    def update_histogram_and_read_cdf(self, deltas):
        """Splits each Δ between its two neighbouring nodes (linear interpolation), blends the
        counts into the running histogram, and returns the CDF at each Δ's lower node. The
        gradient flows through this batch's counts; the stored histogram is detached."""
        position = ((deltas - self.min_val) / self.delta).clamp(0, self.num_bins - 1)
        node = position.detach().floor()
        lower = node.clamp(max=self.num_bins - 2)
        upper_weight = position - lower
        lower = lower.long()
        counts = torch.zeros(self.num_bins, dtype=deltas.dtype, device=deltas.device)
        counts = counts.index_add(0, lower, 1 - upper_weight).index_add(0, lower + 1, upper_weight)
        previous = self.hist_.to(device=deltas.device, dtype=deltas.dtype)
        hist = (1 - self.momentum) * previous + self.momentum * counts
        hist = hist / hist.sum()
        self.hist_.copy_(hist.detach())
        return torch.cumsum(hist, dim=0)[node.long()]
