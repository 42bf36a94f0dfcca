import torch

from .base_regularizer import BaseRegularizer


class ZeroMeanRegularizer(BaseRegularizer):
    """Pushes each row toward zero mean, the condition under which the SNR distance is a
    proper noise ratio (Yuan et al., "Signal-to-Noise Ratio: A Robust Distance Metric for Deep
    Metric Learning", CVPR 2019): l_i = |sum_j x_ij|. The distance is not used."""

    def compute_loss(self, embeddings):
        return self.element_loss(torch.abs(torch.sum(embeddings, dim=1)), embeddings)
