import torch

from ..utils.errors import InvalidArgumentError
from .base_reducer import BaseReducer


class ClassWeightedReducer(BaseReducer):
    """mean_i(w[y_a(i)] · l_i): each loss is multiplied by the weight of its anchor's class
    (the element's own class for element losses), then averaged."""

    def __init__(self, weights, **kwargs):
        super().__init__(**kwargs)
        self.weights = torch.as_tensor(weights)

    def weighted_mean(self, losses, anchor_indices, labels):
        if labels is None:
            raise InvalidArgumentError(
                "ClassWeightedReducer needs labels to look up each anchor's class weight."
            )
        weights = self.weights.to(device=losses.device, dtype=losses.dtype)
        anchor_labels = labels.to(losses.device)[anchor_indices]
        return torch.mean(losses * weights[anchor_labels])

    def element_reduction(self, losses, loss_indices, embeddings, labels):
        return self.weighted_mean(losses, loss_indices, labels)

    def pos_pair_reduction(self, losses, loss_indices, embeddings, labels):
        return self.weighted_mean(losses, loss_indices[0], labels)

    neg_pair_reduction = pos_pair_reduction
    triplet_reduction = pos_pair_reduction
