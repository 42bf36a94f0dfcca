import torch

from ..utils.module_with_records import ModuleWithRecords

REDUCTION_TYPES = ("element", "pos_pair", "neg_pair", "triplet", "already_reduced")


class BaseReducer(ModuleWithRecords):
    """Turns one named sub-loss `{"losses", "indices", "reduction_type", ...}` into a scalar.

    Subclasses define `element_reduction`; pair and triplet losses are reduced the same way
    unless a subclass needs their indices (class weights, per-anchor grouping).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_to_recordable_attributes(name="losses_size", is_stat=True)

    def forward(self, loss_dict, embeddings, labels):
        self.reset_stats()
        if len(loss_dict) != 1:
            raise ValueError(
                f"{type(self).__name__} reduces one sub-loss, got {sorted(loss_dict)}; "
                "use MultipleReducers for losses with several sub-losses."
            )
        loss_info = next(iter(loss_dict.values()))
        return self.reduce_the_loss(loss_info, embeddings, labels)

    def reduce_the_loss(self, loss_info, embeddings, labels):
        losses = loss_info["losses"]
        reduction_type = loss_info["reduction_type"]
        if reduction_type not in REDUCTION_TYPES:
            raise ValueError(f"Unknown reduction_type {reduction_type!r}; expected one of {REDUCTION_TYPES}")
        if self.collect_stats:
            self.losses_size = losses.numel() if torch.is_tensor(losses) else 0
        if self.is_zero_loss(losses):
            return self.zero_loss(embeddings)
        if reduction_type == "already_reduced":
            return losses
        extra = {k: v for k, v in loss_info.items() if k not in ("losses", "indices", "reduction_type")}
        reduction_fn = getattr(self, f"{reduction_type}_reduction")
        return reduction_fn(losses, loss_info["indices"], embeddings, labels, **extra)

    @staticmethod
    def is_zero_loss(losses):
        return (not torch.is_tensor(losses) and losses == 0) or (
            torch.is_tensor(losses) and losses.numel() == 0
        )

    @staticmethod
    def zero_loss(embeddings):
        """A zero that stays in the autograd graph, so backward() works on an empty batch."""
        return torch.sum(embeddings * 0)

    def element_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define element_reduction")

    def pos_pair_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.element_reduction(losses, loss_indices, embeddings, labels, **kwargs)

    def neg_pair_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.element_reduction(losses, loss_indices, embeddings, labels, **kwargs)

    def triplet_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.element_reduction(losses, loss_indices, embeddings, labels, **kwargs)
