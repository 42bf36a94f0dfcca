from collections.abc import Callable

import torch

from ...trainers import BaseTrainer


class SelfSupervisedTerm:
    """The auxiliary self-supervised term (SimCLR, Chen et al. 2020) the trainer adds to its
    losses: `weight * loss(embeddings, embeddings of augmentation(inputs))`, each sample's
    augmented copy its only positive. It never reads a label."""

    def __init__(
        self,
        loss: torch.nn.Module,
        augmentation: Callable[[torch.Tensor], torch.Tensor],
        weight: float,
    ) -> None:
        self.loss = loss
        self.augmentation = augmentation
        self.weight = weight

    def __call__(
        self, trainer: BaseTrainer, data: torch.Tensor, embeddings: torch.Tensor
    ) -> torch.Tensor:
        augmented = trainer.compute_embeddings(self.augmentation(trainer.to_data_device(data)))
        return self.weight * self.loss(embeddings, ref_emb=augmented)
