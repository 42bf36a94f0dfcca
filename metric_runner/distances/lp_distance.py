import torch

from ..utils.errors import InvalidArgumentError
from .base_distance import BaseDistance

HALF_DTYPES = (torch.float16, torch.bfloat16)


class LpDistance(BaseDistance):
    """||q - r||_p. Half-precision inputs are computed in float32 (CPU cdist has no half
    kernel, and CUDA autocast runs cdist in float32 too) and returned in their own dtype."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.is_inverted:
            raise InvalidArgumentError(
                "LpDistance is a distance (smaller = closer); is_inverted must be False."
            )

    def compute_mat(self, query_emb, ref_emb):
        if query_emb.dtype in HALF_DTYPES:
            return torch.cdist(query_emb.float(), ref_emb.float(), p=self.p).to(query_emb.dtype)
        return torch.cdist(query_emb, ref_emb, p=self.p)

    def compute_powered_mat(self, query_emb, ref_emb):
        if self.p == 2 and self.power == 2:
            return self.squared_euclidean(query_emb, ref_emb)
        return super().compute_powered_mat(query_emb, ref_emb)

    @staticmethod
    def squared_euclidean(query_emb, ref_emb):
        """|q|² + |r|² − 2 q·r: one matmul, without cdist's square root and its backward."""
        work_dtype = torch.float32 if query_emb.dtype in HALF_DTYPES else query_emb.dtype
        q, r = query_emb.to(work_dtype), ref_emb.to(work_dtype)
        # One N×M buffer: addmm writes r² − 2 q·r, then q² is added in place.
        squared = torch.addmm((r * r).sum(dim=1), q, r.t(), alpha=-2)
        squared = squared.add_((q * q).sum(dim=1, keepdim=True))
        return squared.clamp_min(0).to(query_emb.dtype)

    def pairwise_distance(self, query_emb, ref_emb):
        return torch.nn.functional.pairwise_distance(query_emb, ref_emb, p=self.p)
