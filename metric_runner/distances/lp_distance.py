import torch

from .base_distance import BaseDistance


class LpDistance(BaseDistance):
    """||q - r||_p. Half precision is computed in float32 because CPU cdist has no half kernel."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.is_inverted:
            raise ValueError("LpDistance is a distance (smaller = closer); is_inverted must be False.")

    def compute_mat(self, query_emb, ref_emb):
        if query_emb.dtype == torch.float16:
            return torch.cdist(query_emb.float(), ref_emb.float(), p=self.p).to(torch.float16)
        return torch.cdist(query_emb, ref_emb, p=self.p)

    def pairwise_distance(self, query_emb, ref_emb):
        return torch.nn.functional.pairwise_distance(query_emb, ref_emb, p=self.p)
