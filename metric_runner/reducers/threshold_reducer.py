import torch
import torch.nn.functional as F

from .base_reducer import BaseReducer


class ThresholdReducer(BaseReducer):
    """The mean over losses strictly between `low` and `high` (either bound may be None):
    mean({l : low < l < high}), zero when no loss passes. A NaN loss makes the result NaN
    (PML drops it silently).

    A loss whose values cannot be negative (hinges) may say so with `"nonnegative": True` in
    its loss dict: with low <= 0, the losses at or below `low` are then zeros, so their plain
    sum is the kept sum, which saves a pass and a copy of the losses in forward and in
    backward. (The gradient w.r.t. those zero losses is then 1 / count instead of 0; the hinge
    that made them zero still stops it.)
    """

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

    def unpack_loss_info(self, loss_info):
        losses, loss_indices, reduction_type, kwargs = super().unpack_loss_info(loss_info)
        # Only this class's element_reduction takes the hint (not a subclass's override).
        takes_hint = type(self).element_reduction is ThresholdReducer.element_reduction
        if takes_hint and loss_info.get("nonnegative", False):
            kwargs = {**kwargs, "nonnegative": True}
        return losses, loss_indices, reduction_type, kwargs

    def element_reduction(self, losses, loss_indices, embeddings, labels, nonnegative=False):
        above_low = losses > self.low if self.low is not None else None
        below_high = losses < self.high if self.high is not None else None
        if above_low is None or below_high is None:
            keep = below_high if above_low is None else above_low
        else:
            keep = above_low & below_high
        num_kept = torch.count_nonzero(keep)
        if self.collect_stats:
            self.set_stats(above_low, below_high, num_kept)
        # A masked sum over a clamped count avoids a host sync to test for "nothing kept".
        kept_sum = torch.sum(self.zero_outside_bounds(losses, nonnegative))
        return kept_sum / num_kept.clamp(min=1).to(losses.dtype)

    def zero_outside_bounds(self, losses, nonnegative=False):
        """The losses with those outside the bounds set to 0, an inf among them included (no
        inf * 0 in the sum or its gradient). threshold() is a vectorized kernel on CPU, where
        torch.where and masked_fill with a boolean mask run ~20x slower on large losses."""
        if self.low is not None and not (nonnegative and self.low <= 0):
            losses = F.threshold(losses, self.low, 0.0)
        if self.high is not None:
            # l < high  <=>  -l > -high
            losses = F.threshold(-losses, -self.high, 0.0).neg_()
        return losses

    def set_stats(self, above_low, below_high, num_kept):
        """Counts as Python ints; a bound that is not set counts 0."""
        self.num_past_filter = num_kept.item()
        self.num_above_low = above_low.sum().item() if above_low is not None else 0
        self.num_below_high = below_high.sum().item() if below_high is not None else 0
