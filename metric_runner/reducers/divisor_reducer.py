import torch

from ..utils.errors import InvalidArgumentError
from .base_reducer import BaseReducer


class DivisorReducer(BaseReducer):
    """sum(losses) / divisor, where the loss puts `divisor` in its loss dict entry (a number or
    a tensor); a zero divisor gives a zero loss."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_to_recordable_attributes(name="divisor", is_stat=True)

    def unpack_loss_info(self, loss_info):
        losses, loss_indices, reduction_type, _ = super().unpack_loss_info(loss_info)
        # Zero and already-reduced sub-losses (e.g. a loss's zero_losses()) carry no divisor.
        if reduction_type == "already_reduced" or self.input_is_zero_loss(losses):
            return losses, loss_indices, reduction_type, {}
        if "divisor" not in loss_info:
            raise InvalidArgumentError(
                "DivisorReducer needs the loss to put 'divisor' in its loss dict; "
                "use another reducer with this loss."
            )
        return losses, loss_indices, reduction_type, {"divisor": loss_info["divisor"]}

    def element_reduction(self, losses, loss_indices, embeddings, labels, divisor):
        if self.collect_stats:
            self.divisor = divisor.item() if torch.is_tensor(divisor) else divisor
        if not torch.is_tensor(divisor):
            return self.zero_loss(embeddings) if divisor == 0 else torch.sum(losses) / divisor
        is_zero = divisor == 0
        # Dividing by 1 where the divisor is 0 keeps the masked-out branch's gradient finite.
        safe_divisor = torch.where(is_zero, torch.ones_like(divisor), divisor)
        return torch.sum(losses) / safe_divisor * ~is_zero
