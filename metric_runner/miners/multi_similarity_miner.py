import torch

from ..distances import CosineSimilarity
from ..utils import loss_and_miner_utils as lmu
from .base_miner import BaseMiner


class MultiSimilarityMiner(BaseMiner):
    """Pair mining of the Multi-Similarity loss (Wang et al., CVPR 2019).

    With similarities S: a negative pair is kept if S_an > min_p S_ap - epsilon and a positive
    pair if S_ap < max_n S_an + epsilon (the hardest pair of the other kind, loosened by
    epsilon). With distances the comparisons flip. Returns pairs (a1, p, a2, n).
    """

    def __init__(self, epsilon=0.1, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.add_to_recordable_attributes(name="epsilon", is_stat=False)

    def get_default_distance(self):
        return CosineSimilarity()

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        mat = self.distance(embeddings, ref_emb)
        pos_mask, neg_mask = lmu.get_matches_and_diffs(
            labels, self.ref_labels_or_none(embeddings, ref_emb, ref_labels)
        )
        hardest_pos = self.extreme_per_row(mat, pos_mask, hardest_of="pos")
        hardest_neg = self.extreme_per_row(mat, neg_mask, hardest_of="neg")
        # margin(x, y) > 0 means x is farther than y.
        keep_neg = neg_mask & (self.distance.margin(mat, hardest_pos) < self.epsilon)
        keep_pos = pos_mask & (self.distance.margin(hardest_neg, mat) < self.epsilon)
        a1, p = torch.where(keep_pos)
        a2, n = torch.where(keep_neg)
        return a1, p, a2, n

    def extreme_per_row(self, mat, mask, hardest_of):
        """The farthest positive or the closest negative of each row, as an (N, 1) column;
        rows without any such pair get a value that selects nothing."""
        pick_farthest = hardest_of == "pos"
        use_max = pick_farthest != self.distance.is_inverted
        fill = float("-inf") if use_max else float("inf")
        masked = mat.masked_fill(~mask, fill)
        return masked.amax(dim=1, keepdim=True) if use_max else masked.amin(dim=1, keepdim=True)
