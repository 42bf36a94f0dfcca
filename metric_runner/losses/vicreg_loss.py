import torch

from ..utils import common_functions as c_f
from .base_metric_loss_function import BaseMetricLossFunction


class VICRegLoss(BaseMetricLossFunction):
    """VICReg (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization
    for Self-Supervised Learning", ICLR 2022), on two views Z = embeddings, Z' = ref_emb:

    λ mean_i ‖z_i − z'_i‖² / d + μ/2 Σ_{Z,Z'} mean_j [1 − √(Var z^j + ε)]_+
    + ν Σ_{Z,Z'} Σ_{j≠k} C(Z)_jk² / d, with C the covariance matrix over the batch.
    """

    def __init__(self, invariance_lambda=25, variance_mu=25, covariance_v=1, eps=1e-4, **kwargs):
        if "distance" in kwargs:
            raise ValueError(
                "VICRegLoss cannot use a distance function: it compares the two views directly."
            )
        super().__init__(**kwargs)
        self.invariance_lambda = invariance_lambda
        self.variance_mu = variance_mu
        self.covariance_v = covariance_v
        self.eps = eps

    def check_labels_available(self, labels, indices_tuple):
        if labels is not None or indices_tuple is not None:
            raise ValueError(
                "VICRegLoss takes no labels or indices_tuple: call loss_fn(embeddings, ref_emb=ref_emb) "
                "with ref_emb[i] the other view of embeddings[i]."
            )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if ref_emb.shape != embeddings.shape:
            raise ValueError(
                f"VICRegLoss needs ref_emb with the same shape as embeddings (one view each), got "
                f"{tuple(ref_emb.shape)} and {tuple(embeddings.shape)}."
            )
        invariance = self.invariance_lambda * self.invariance_loss(embeddings, ref_emb)
        variance1, variance2 = self.variance_loss(embeddings, ref_emb)
        covariance = self.covariance_v * self.covariance_loss(embeddings, ref_emb)
        emb_indices = c_f.torch_arange_from_size(embeddings)
        dim_indices = c_f.torch_arange_from_size(embeddings, size_dim=1)
        return {
            "invariance_loss": {
                "losses": invariance,
                "indices": emb_indices,
                "reduction_type": "element",
            },
            "variance_loss1": {
                "losses": self.variance_mu * variance1,
                "indices": dim_indices,
                "reduction_type": "element",
            },
            "variance_loss2": {
                "losses": self.variance_mu * variance2,
                "indices": dim_indices,
                "reduction_type": "element",
            },
            "covariance_loss": {
                "losses": covariance,
                "indices": None,
                "reduction_type": "already_reduced",
            },
        }

    def invariance_loss(self, emb, ref_emb):
        """Per sample: the mean squared difference between its two views."""
        return torch.mean((emb - ref_emb) ** 2, dim=1)

    def variance_loss(self, emb, ref_emb):
        """Per dimension and view: [1 − std]_+ / 2 (the two views share the weight μ)."""
        return self.hinged_std(emb) / 2, self.hinged_std(ref_emb) / 2

    def covariance_loss(self, emb, ref_emb):
        """Σ of both views' squared off-diagonal covariances, each divided by the dimension."""
        return self.off_diagonal_covariance(emb) + self.off_diagonal_covariance(ref_emb)

    def hinged_std(self, x):
        return torch.relu(1 - torch.sqrt(x.var(dim=0) + self.eps))

    @staticmethod
    def off_diagonal_covariance(x):
        num, dim = x.shape
        centered = x - x.mean(dim=0)
        cov = centered.t() @ centered / (num - 1)
        return (torch.sum(cov**2) - torch.sum(torch.diagonal(cov) ** 2)) / dim

    def _sub_loss_names(self):
        return ["invariance_loss", "variance_loss1", "variance_loss2", "covariance_loss"]
