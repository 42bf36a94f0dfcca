import torch

from .base_distance import BaseDistance

HALF_DTYPES = (torch.float16, torch.bfloat16)


class LpDistance(BaseDistance):
    """||q - r||_p. Half-precision inputs are computed in float32 (CPU cdist has no half
    kernel, and CUDA autocast runs cdist in float32 too) and returned in their own dtype."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.is_inverted:
            raise ValueError(
                "LpDistance is a distance (smaller = closer); is_inverted must be False."
            )

    def compute_mat(self, query_emb, ref_emb):
        if query_emb.dtype in HALF_DTYPES:
            return torch.cdist(query_emb.float(), ref_emb.float(), p=self.p).to(query_emb.dtype)
        return torch.cdist(query_emb, ref_emb, p=self.p)

    def pairwise_distance(self, query_emb, ref_emb):
        return torch.nn.functional.pairwise_distance(query_emb, ref_emb, p=self.p)
