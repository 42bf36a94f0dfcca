import torch

from .base_regularizer import BaseRegularizer


class LpRegularizer(BaseRegularizer):
    """Keeps rows small: l_i = ||x_i||_p^power, reduced by the reducer (mean by default).
    The distance is not used."""

    def __init__(self, p=2, power=1, **kwargs):
        super().__init__(**kwargs)
        self.p = p
        self.power = power
        self.add_to_recordable_attributes(list_of_names=["p", "power"], is_stat=False)

    def compute_loss(self, embeddings):
        norms = torch.linalg.vector_norm(embeddings, ord=self.p, dim=1)
        if self.power != 1:
            norms = norms**self.power
        return self.element_loss(norms, embeddings)
