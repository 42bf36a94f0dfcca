import torch

from ..utils import loss_and_miner_utils as lmu
from ..utils.errors import InvalidArgumentError
from ..utils.module_with_records import ModuleWithRecords

REDUCTION_TYPES = ("element", "pos_pair", "neg_pair", "triplet", "already_reduced")
# How many index tensors each tuple reduction type carries: (anchors, positives) for pairs, ...
NUM_INDEX_TENSORS = {"pos_pair": 2, "neg_pair": 2, "triplet": 3}


class BaseReducer(ModuleWithRecords):
    """Turns one named sub-loss `{"losses", "indices", "reduction_type", ...}` into a scalar.

    `reducer(loss_dict, embeddings, labels)`. Subclasses define `element_reduction`; pair and
    triplet losses are reduced the same way unless a subclass needs their indices (class
    weights, per-anchor grouping), so the indices may be an lmu.LazyIndexTuple that is only built
    when indexed. Empty losses reduce to a zero that still backpropagates.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_to_recordable_attributes(name="losses_size", is_stat=True)

    def forward(self, loss_dict, embeddings, labels):
        self.reset_stats()
        if len(loss_dict) != 1:
            raise InvalidArgumentError(
                f"{type(self).__name__} reduces one sub-loss, got {sorted(loss_dict)}; "
                "use MultipleReducers for losses with several sub-losses."
            )
        loss_info = next(iter(loss_dict.values()))
        losses, loss_indices, reduction_type, kwargs = self.unpack_loss_info(loss_info)
        return self.reduce_the_loss(
            losses, loss_indices, reduction_type, kwargs, embeddings, labels
        )

    def unpack_loss_info(self, loss_info):
        """(losses, indices, reduction_type, extra kwargs for the reduction function)."""
        return loss_info["losses"], loss_info["indices"], loss_info["reduction_type"], {}

    def reduce_the_loss(self, losses, loss_indices, reduction_type, kwargs, embeddings, labels):
        if reduction_type not in REDUCTION_TYPES:
            raise InvalidArgumentError(
                f"Unknown reduction_type {reduction_type!r}; expected one of {REDUCTION_TYPES}"
            )
        if self.collect_stats:
            self.losses_size = losses.numel() if torch.is_tensor(losses) else 1
        if self.input_is_zero_loss(losses):
            return self.zero_loss(embeddings)
        self.check_sizes(losses, loss_indices, reduction_type)
        reduction_func = self.get_reduction_func(reduction_type)
        return reduction_func(losses, loss_indices, embeddings, labels, **kwargs)

    def get_reduction_func(self, reduction_type):
        return getattr(self, f"{reduction_type}_reduction")

    @staticmethod
    def check_sizes(losses, loss_indices, reduction_type):
        """One index (or one index per tuple member) for every loss value."""
        if reduction_type == "already_reduced":
            if torch.is_tensor(losses) and losses.numel() != 1:
                raise InvalidArgumentError(
                    f"'already_reduced' losses must hold a single value, got shape {tuple(losses.shape)}; "
                    "use reduction_type 'element' for per-sample losses."
                )
            return
        if reduction_type == "element":
            if not torch.is_tensor(loss_indices) or len(loss_indices) != len(losses):
                raise InvalidArgumentError(
                    f"'element' losses need a tensor of one index per loss ({len(losses)}), "
                    f"got {_describe(loss_indices)}."
                )
            return
        expected = NUM_INDEX_TENSORS[reduction_type]
        lengths = lmu.index_tensor_lengths(loss_indices)
        if (
            lengths is None
            or len(lengths) != expected
            or any(length != len(losses) for length in lengths)
        ):
            raise InvalidArgumentError(
                f"'{reduction_type}' losses need a tuple of {expected} index tensors of length "
                f"{len(losses)} (one entry per loss), got {_describe(loss_indices)}."
            )

    @staticmethod
    def input_is_zero_loss(losses):
        """A loss with nothing to reduce: the literal 0 losses return, or an empty tensor."""
        if torch.is_tensor(losses):
            return losses.numel() == 0
        return losses == 0

    @staticmethod
    def zero_loss(embeddings):
        """A zero that stays in the autograd graph, so backward() works on an empty batch."""
        return torch.sum(embeddings * 0)

    def already_reduced_reduction(self, losses, loss_indices, embeddings, labels):
        return losses

    def element_reduction(self, losses, loss_indices, embeddings, labels):
        raise NotImplementedError(f"{type(self).__name__} must define element_reduction")

    def pos_pair_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.element_reduction(losses, loss_indices, embeddings, labels, **kwargs)

    def neg_pair_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.element_reduction(losses, loss_indices, embeddings, labels, **kwargs)

    def triplet_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.element_reduction(losses, loss_indices, embeddings, labels, **kwargs)


def _describe(indices):
    if torch.is_tensor(indices):
        return f"a tensor of shape {tuple(indices.shape)}"
    lengths = lmu.index_tensor_lengths(indices)
    if lengths is not None:
        return f"{len(lengths)} tensors of lengths {lengths}"
    return repr(indices)
