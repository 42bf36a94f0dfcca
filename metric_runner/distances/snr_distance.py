import torch

from ..utils.errors import InvalidArgumentError
from .base_distance import BaseDistance


class SNRDistance(BaseDistance):
    """Signal-to-noise ratio distance (Yuan et al., CVPR 2019): d(q, r) = Var(r - q) / Var(q).

    With centered rows qc, rc the ratio is |qc - rc|² / |qc|² (the 1/(D-1) factors cancel), and
    |qc - rc|² = |qc|² + |rc|² - 2 qc·rc gives the matrix in N×N memory instead of the N×N×D
    tensor of explicit differences.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.is_inverted:
            raise InvalidArgumentError(
                "SNRDistance is a distance (smaller = closer); is_inverted must be False."
            )

    def compute_mat(self, query_emb, ref_emb):
        query_centered = query_emb - query_emb.mean(dim=1, keepdim=True)
        ref_centered = ref_emb - ref_emb.mean(dim=1, keepdim=True)
        query_sq = torch.sum(query_centered**2, dim=1, keepdim=True)
        ref_sq = torch.sum(ref_centered**2, dim=1).unsqueeze(0)
        # Rounding can push the difference of nearly equal rows slightly below zero.
        diff_sq = (query_sq + ref_sq - 2 * torch.matmul(query_centered, ref_centered.t())).clamp(
            min=0
        )
        return diff_sq / query_sq

    def pairwise_distance(self, query_emb, ref_emb):
        return torch.var(query_emb - ref_emb, dim=1) / torch.var(query_emb, dim=1)
