import torch

from ..utils.errors import InvalidArgumentError
from .base_reducer import BaseReducer


class ThresholdReducer(BaseReducer):
    """The mean over losses strictly between `low` and `high` (either bound may be None):
    mean({l : low < l < high}), zero when no loss passes. A NaN loss makes the result NaN
    (PML drops it silently; a NaN means a broken loss, so it is not hidden).

    The kept losses are gathered and averaged by torch.mean, as PML does, so the value is
    bit-identical to PML's: a masked sum over all the losses divided by the count adds in
    another order and differs in the last bit about half the time.
    """

    def __init__(self, low=None, high=None, **kwargs):
        super().__init__(**kwargs)
        if low is None and high is None:
            raise InvalidArgumentError("ThresholdReducer needs at least one of low or high.")
        if low is not None and high is not None and low >= high:
            raise InvalidArgumentError(
                f"ThresholdReducer needs low < high, got low={low}, high={high}"
            )
        self.low = low
        self.high = high
        self.add_to_recordable_attributes(list_of_names=["low", "high"], is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=["num_past_filter", "num_above_low", "num_below_high"], is_stat=True
        )

    def element_reduction(self, losses, loss_indices, embeddings, labels):
        keep = self.inside_bounds_or_nan(losses)
        if self.collect_stats:
            self.set_stats(losses, keep)
        return _MeanOfKept.apply(losses, keep)

    def inside_bounds_or_nan(self, losses):
        """low < l < high, written as "not outside" so that a NaN loss is kept."""
        outside = None
        if self.low is not None:
            outside = losses <= self.low
        if self.high is not None:
            at_or_above_high = losses >= self.high
            outside = at_or_above_high if outside is None else outside.logical_or_(at_or_above_high)
        return outside.logical_not_()

    def set_stats(self, losses, keep):
        """Counts as Python ints; a bound that is not set counts 0."""
        self.num_past_filter = torch.count_nonzero(keep).item()
        self.num_above_low = (
            torch.count_nonzero(losses > self.low).item() if self.low is not None else 0
        )
        self.num_below_high = (
            torch.count_nonzero(losses < self.high).item() if self.high is not None else 0
        )


class _MeanOfKept(torch.autograd.Function):
    """torch.mean of losses[keep] (0 when nothing is kept). Backward writes grad / count where
    kept and 0 elsewhere in one pass that allocates only its result, instead of index_select's
    scatter into a zeroed buffer."""

    @staticmethod
    def forward(ctx, losses, keep):
        positions = torch.nonzero(keep.reshape(-1)).squeeze(1)
        ctx.save_for_backward(keep)
        ctx.count = len(positions)
        if ctx.count == 0:
            return losses.new_zeros(())
        return torch.mean(losses.reshape(-1).index_select(0, positions))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        if ctx.count == 0:
            return torch.zeros(keep.shape, dtype=grad.dtype, device=grad.device), None
        return torch.where(keep, grad / ctx.count, 0), None
