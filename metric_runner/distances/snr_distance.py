import torch

from .base_distance import BaseDistance


class SNRDistance(BaseDistance):
    """Signal-to-noise ratio distance (Yuan et al., CVPR 2019): Var(q - r) / Var(q).

    Var(q - r) is expanded as (|q|² + |r|² - 2 q·r - D (mean(q) - mean(r))²) / (D - 1) so the
    matrix costs N×N memory instead of the N×N×D tensor of explicit differences.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.is_inverted:
            raise ValueError("SNRDistance is a distance (smaller = closer); is_inverted must be False.")

    def compute_mat(self, query_emb, ref_emb):
        dim = query_emb.shape[1]
        q_sq = torch.sum(query_emb**2, dim=1, keepdim=True)
        r_sq = torch.sum(ref_emb**2, dim=1).unsqueeze(0)
        mean_diff = query_emb.mean(dim=1, keepdim=True) - ref_emb.mean(dim=1).unsqueeze(0)
        diff_sq_sum = q_sq + r_sq - 2 * torch.matmul(query_emb, ref_emb.t())
        pair_variances = (diff_sq_sum - dim * mean_diff**2).clamp(min=0) / (dim - 1)
        return pair_variances / torch.var(query_emb, dim=1, keepdim=True)

    def pairwise_distance(self, query_emb, ref_emb):
        return torch.var(query_emb - ref_emb, dim=1) / torch.var(query_emb, dim=1)
