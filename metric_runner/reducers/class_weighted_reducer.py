import torch

from .base_reducer import BaseReducer


class ClassWeightedReducer(BaseReducer):
    """The mean of losses, each multiplied by the weight of its anchor's class."""

    def __init__(self, weights, **kwargs):
        super().__init__(**kwargs)
        self.weights = torch.as_tensor(weights)

    def weighted_mean(self, losses, anchor_indices, labels):
        if labels is None:
            raise ValueError("ClassWeightedReducer needs labels to look up each anchor's class weight.")
        weights = self.weights.to(device=losses.device, dtype=losses.dtype)
        return torch.mean(losses * weights[labels[anchor_indices]])

    def element_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.weighted_mean(losses, loss_indices, labels)

    def pos_pair_reduction(self, losses, loss_indices, embeddings, labels, **kwargs):
        return self.weighted_mean(losses, loss_indices[0], labels)

    neg_pair_reduction = pos_pair_reduction
    triplet_reduction = pos_pair_reduction
