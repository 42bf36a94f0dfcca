import torch

from .base_reducer import BaseReducer


class DivisorReducer(BaseReducer):
    """sum(losses) / divisor, where the loss puts `divisor` in its loss dict entry."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_to_recordable_attributes(name="divisor", is_stat=True)

    def element_reduction(self, losses, loss_indices, embeddings, labels, divisor=None, **kwargs):
        if divisor is None:
            raise ValueError("DivisorReducer needs the loss to provide 'divisor' in its loss dict.")
        if self.collect_stats:
            self.divisor = float(divisor)
        if torch.is_tensor(divisor):
            return torch.sum(losses) / divisor.clamp(min=1e-12) * (divisor != 0)
        if divisor == 0:
            return self.zero_loss(embeddings)
        return torch.sum(losses) / divisor
