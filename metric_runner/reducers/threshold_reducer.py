import torch

from .base_reducer import BaseReducer


class ThresholdReducer(BaseReducer):
    """The mean over losses strictly between `low` and `high` (either bound may be None):
    mean({l : low < l < high}), zero when no loss passes."""

    def __init__(self, low=None, high=None, **kwargs):
        super().__init__(**kwargs)
        if low is None and high is None:
            raise ValueError("ThresholdReducer needs at least one of low or high.")
        if low is not None and high is not None and low >= high:
            raise ValueError(f"ThresholdReducer needs low < high, got low={low}, high={high}")
        self.low = low
        self.high = high
        self.add_to_recordable_attributes(list_of_names=["low", "high"], is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=["num_past_filter", "num_above_low", "num_below_high"], is_stat=True
        )

    def element_reduction(self, losses, loss_indices, embeddings, labels):
        above_low = losses > self.low if self.low is not None else None
        below_high = losses < self.high if self.high is not None else None
        keep = torch.ones_like(losses, dtype=torch.bool)
        for condition in (above_low, below_high):
            if condition is not None:
                keep = keep & condition
        num_kept = keep.sum()
        if self.collect_stats:
            self.set_stats(above_low, below_high, num_kept)
        # A masked sum over a clamped count avoids a host sync to test for "nothing kept";
        # where() keeps an inf among the dropped losses out of the sum and its gradient.
        kept_sum = torch.sum(torch.where(keep, losses, torch.zeros_like(losses)))
        return kept_sum / num_kept.clamp(min=1).to(losses.dtype)

    def set_stats(self, above_low, below_high, num_kept):
        """Counts as Python ints; a bound that is not set counts 0."""
        self.num_past_filter = num_kept.item()
        self.num_above_low = above_low.sum().item() if above_low is not None else 0
        self.num_below_high = below_high.sum().item() if below_high is not None else 0
