import torch

from ..utils import loss_and_miner_utils as lmu
from .base_miner import BaseMiner


class UniformHistogramMiner(BaseMiner):
    """Pairs spread evenly over the range of distances: the positive-pair distances are split
    into `num_bins` equal-width bins between their min and max, and `pos_per_bin` pairs are
    drawn uniformly, with replacement, from every non-empty bin; likewise for negatives with
    `neg_per_bin`. Returns pairs (a1, p, a2, n).
    """

    def __init__(self, num_bins=100, pos_per_bin=10, neg_per_bin=10, **kwargs):
        super().__init__(**kwargs)
        for name, value in (
            ("num_bins", num_bins),
            ("pos_per_bin", pos_per_bin),
            ("neg_per_bin", neg_per_bin),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        self.num_bins = int(num_bins)
        self.pos_per_bin = int(pos_per_bin)
        self.neg_per_bin = int(neg_per_bin)
        self.add_to_recordable_attributes(
            list_of_names=["pos_per_bin", "neg_per_bin"], is_stat=False
        )

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        mat = self.distance(embeddings, ref_emb)
        pos_mask, neg_mask = lmu.get_matches_and_diffs(
            labels, self.ref_labels_or_none(embeddings, ref_emb, ref_labels)
        )
        a1, p = self.uniform_over_bins(mat, pos_mask, self.pos_per_bin)
        del pos_mask  # not needed while the (larger) negative side peaks
        a2, n = self.uniform_over_bins(mat, neg_mask, self.neg_per_bin)
        return a1, p, a2, n

    def uniform_over_bins(self, mat, mask, per_bin):
        """(rows, columns) of `per_bin` random draws from each non-empty bin of mat[mask].

        Works on the masked values and their ranks, with small bin ids, rather than on index
        lists of every pair: peak memory stays near a few N×M byte-sized masks."""
        bins = self.bin_of_each(mat.reshape(-1)[torch.nonzero(mask.view(-1)).squeeze(1)])
        if len(bins) == 0:
            empty = torch.empty(0, dtype=torch.long, device=mat.device)
            return empty, empty.clone()
        counts = torch.bincount(bins, minlength=self.num_bins)
        starts = torch.cumsum(counts, dim=0) - counts
        non_empty = torch.where(counts > 0)[0]
        uniform = torch.rand(len(non_empty), per_bin, device=mat.device, dtype=torch.float64)
        ranks = starts[non_empty].unsqueeze(1) + (uniform * counts[non_empty].unsqueeze(1)).long()
        picks = torch.argsort(bins)[ranks.flatten()]  # positions among the masked entries
        del bins
        flat = torch.nonzero(mask.view(-1)).squeeze(1)[picks]
        return flat // mat.shape[1], flat % mat.shape[1]

    def bin_of_each(self, values):
        """Equal-width bins between the min and the max (the max joins the last bin), as the
        smallest integer type that holds them, which keeps the sort cheap."""
        bin_dtype = torch.int16 if self.num_bins <= torch.iinfo(torch.int16).max else torch.int32
        if len(values) == 0:
            return values.to(bin_dtype)
        values = values.float() if values.dtype == torch.float16 else values
        low, high = values.min(), values.max()
        width = (high - low).clamp(min=torch.finfo(values.dtype).tiny)
        scaled = (values - low).div_(width).mul_(self.num_bins)
        return scaled.clamp_(max=self.num_bins - 1).to(bin_dtype)
