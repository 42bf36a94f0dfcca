import torch


class BatchedDistance(torch.nn.Module):
    """Computes the distance matrix one block of query rows at a time and hands each block to
    `iter_fn(mat, start, end)` (rows start:end of the full matrix), so an N×N matrix never has
    to exist at once. Attributes such as `is_inverted` are read from the wrapped distance."""

    def __init__(self, distance, iter_fn=None, batch_size=32):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.distance = distance
        self.iter_fn = iter_fn
        self.batch_size = batch_size

    def forward(self, query_emb, ref_emb=None):
        if self.iter_fn is None:
            raise TypeError(
                "BatchedDistance has no iter_fn: pass iter_fn(mat, start, end) to the constructor "
                "or set the iter_fn attribute before calling it."
            )
        ref_emb = query_emb if ref_emb is None else ref_emb
        for start in range(0, len(query_emb), self.batch_size):
            end = min(start + self.batch_size, len(query_emb))
            mat = self.distance(query_emb[start:end], ref_emb)
            self.iter_fn(mat, start, end)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("distance"), name)
