import torch

from .base_reducer import BaseReducer


class ThresholdReducer(BaseReducer):
    """The mean over losses strictly between `low` and `high` (either bound may be None)."""

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

    def element_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        keep = torch.ones_like(losses, dtype=torch.bool)
        if self.low is not None:
            above_low = losses > self.low
            keep &= above_low
        if self.high is not None:
            below_high = losses < self.high
            keep &= below_high
        num_kept = keep.sum()
        if self.collect_stats:
            self.num_past_filter = num_kept.item()
            self.num_above_low = above_low.sum().item() if self.low is not None else len(losses)
            self.num_below_high = below_high.sum().item() if self.high is not None else len(losses)
        # A masked sum over a clamped count avoids a host sync to test for "nothing kept".
        kept_sum = torch.sum(losses * keep)
        return kept_sum / num_kept.clamp(min=1).to(losses.dtype)
