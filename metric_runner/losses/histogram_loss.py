import torch

from ..distances import CosineSimilarity
from ..utils import loss_and_miner_utils as lmu
from ..utils.errors import InvalidArgumentError
from .base_metric_loss_function import BaseMetricLossFunction


class HistogramLoss(BaseMetricLossFunction):
    """Histogram loss (Ustinova & Lempitsky, "Learning Deep Embeddings with Histogram Loss",
    NeurIPS 2016).

    Positive and negative similarities go into linearly interpolated histograms p⁺, p⁻ over the
    nodes t_r = −1 + rΔ (Δ = 2 / n_bins); the loss Σ_r p⁻_r Σ_{q≤r} p⁺_q estimates the
    probability that a random negative pair is more similar than a random positive pair. Pairs
    are those of the batch's triplets, each unordered pair counted once.
    """

    def __init__(self, n_bins: int = None, delta: float = None, **kwargs):
        super().__init__(**kwargs)
        self.n_bins, self.delta = self.bins_and_width(n_bins, delta)
        if not (self.distance.is_inverted and self.distance.normalize_embeddings):
            raise InvalidArgumentError(
                f"HistogramLoss needs similarities in [-1, 1], e.g. CosineSimilarity(); got "
                f"{type(self.distance).__name__}(normalize_embeddings="
                f"{self.distance.normalize_embeddings})."
            )
        self.add_to_recordable_attributes(name="delta", is_stat=False)

    @staticmethod
    def bins_and_width(n_bins, delta):
        """n_bins and Δ = 2 / n_bins from either one (100 bins when neither is given)."""
        if n_bins is None and delta is None:
            n_bins = 100
        if n_bins is None:
            n_bins = round(2 / delta)
        if n_bins < 1 or (delta is not None and abs(delta - 2 / n_bins) > 1e-9):
            raise InvalidArgumentError(
                f"HistogramLoss needs a positive n_bins and delta = 2 / n_bins; got n_bins={n_bins}, "
                f"delta={delta}. Pass only one of them."
            )
        return n_bins, 2 / n_bins

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if ref_emb is not embeddings:
            raise InvalidArgumentError(
                "HistogramLoss does not support ref_emb: it compares the batch with itself."
            )
        size = len(embeddings)
        pos_mask, neg_mask = self.unordered_pair_masks(
            labels, indices_tuple, size, embeddings.device
        )
        mat = self.distance(embeddings)
        # Half precision cannot count N² pairs; the histograms are built in float32 at least.
        work = mat.float() if mat.dtype == torch.float16 else mat
        pos_sims, neg_sims = work[pos_mask], work[neg_mask]
        if len(pos_sims) == 0 or len(neg_sims) == 0:
            return self.zero_losses()
        pos_hist = self.soft_histogram(pos_sims)
        neg_hist = self.soft_histogram(neg_sims)
        loss = torch.sum(neg_hist * torch.cumsum(pos_hist, dim=0)).to(mat.dtype)
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}

    @staticmethod
    def unordered_pair_masks(labels, indices_tuple, size, device):
        """Upper-triangular masks of the positive and negative pairs that belong to a triplet:
        a positive pair needs its anchor to have a negative, and vice versa."""
        if indices_tuple is None:
            pos_mask, neg_mask = lmu.get_matches_and_diffs(labels)
        else:
            pairs = lmu.convert_to_pairs(indices_tuple, labels)
            pos_mask, neg_mask = lmu.pairs_to_masks(pairs, (size, size), device)
        has_pos = lmu.any_true(pos_mask, dim=1, keepdim=True)
        has_neg = lmu.any_true(neg_mask, dim=1, keepdim=True)
        pos_mask = pos_mask & has_neg
        neg_mask = neg_mask & has_pos
        return torch.triu(pos_mask | pos_mask.t()), torch.triu(neg_mask | neg_mask.t())

    def soft_histogram(self, similarities):
        """Each similarity splits its unit mass between its two neighbouring nodes in
        proportion to its closeness to them; the histogram sums to 1."""
        position = ((similarities + 1) / self.delta).clamp(0, self.n_bins)
        lower = position.detach().floor().clamp(max=self.n_bins - 1)
        upper_weight = position - lower
        lower = lower.long()
        hist = torch.zeros(self.n_bins + 1, dtype=similarities.dtype, device=similarities.device)
        hist = hist.index_add(0, lower, 1 - upper_weight).index_add(0, lower + 1, upper_weight)
        return hist / len(similarities)

    def get_default_distance(self):
        return CosineSimilarity()
