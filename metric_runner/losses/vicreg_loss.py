import torch

from ..utils import common_functions as c_f
from .base_metric_loss_function import BaseMetricLossFunction


class VICRegLoss(BaseMetricLossFunction):
    """VICReg (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization
    for Self-Supervised Learning", ICLR 2022), on two views Z = embeddings, Z' = ref_emb:

    λ mean_i ‖z_i − z'_i‖² / d + μ/2 Σ_{Z,Z'} mean_j [1 − √(Var z^j + ε)]_+
    + ν Σ_{Z,Z'} Σ_{j≠k} C(Z)_jk² / d, with C the covariance matrix over the batch.
    """

    # Two views, no labels: the runner keeps it out of the training-loss slot; it serves as an
    # auxiliary term (self_supervised=vicreg).
    takes_labels = False

    def __init__(self, invariance_lambda=25, variance_mu=25, covariance_v=1, eps=1e-4, **kwargs):
        if "distance" in kwargs:
            raise ValueError(
                "VICRegLoss cannot use a distance function: it compares the two views directly."
            )
        if "embedding_regularizer" in kwargs:
            raise ValueError(
                "VICRegLoss cannot use an embedding_regularizer: its variance and covariance "
                "terms already regularize the embeddings."
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
        variance1, variance2, covariance = self.variance_and_covariance_losses(embeddings, ref_emb)
        covariance = self.covariance_v * covariance
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
        """Per sample: the mean squared difference between its two views. (A norm keeps only
        the difference for backward, where (·)² would also keep its square.)"""
        return torch.linalg.vector_norm(emb - ref_emb, dim=1).square() / emb.shape[1]

    def variance_loss(self, emb, ref_emb):
        """Per dimension and view: [1 − std]_+ / 2 (the two views share the weight μ)."""
        return self.variance_and_covariance_losses(emb, ref_emb)[:2]

    def covariance_loss(self, emb, ref_emb):
        """Σ of both views' squared off-diagonal covariances, each divided by the dimension."""
        return self.variance_and_covariance_losses(emb, ref_emb)[2]

    def variance_and_covariance_losses(self, emb, ref_emb):
        """Both views' regularisers from one batched covariance matrix: the variances are its
        diagonal, so no separate variance pass is needed.

        Returns ([1 − std]_+ / 2 per dimension for each view, and Σ of both views' squared
        off-diagonal covariances, each divided by the dimension)."""
        dim = emb.shape[1]
        cov = BatchCovariance.apply(emb, ref_emb)
        variances = torch.diagonal(cov, dim1=1, dim2=2)
        hinged_std = torch.relu(1 - torch.sqrt(variances + self.eps)) / 2
        off_diagonal = torch.sum(cov**2) - torch.sum(variances**2)
        return hinged_std[0], hinged_std[1], off_diagonal / dim

    def _sub_loss_names(self):
        return ["invariance_loss", "variance_loss1", "variance_loss2", "covariance_loss"]


class BatchCovariance(torch.autograd.Function):
    """Unbiased covariance matrices of several views, each (N, D) → (V, D, D).

    The views are centered straight into one (V, N, D) buffer, so a single batched product
    serves them all. Autograd would spend two matrix products on the backward of
    centeredᵀ·centered; with the centered views saved, one suffices,
    d centered = centered·(G + Gᵀ)/(N − 1). Its columns already sum to zero, so the centering
    step needs no backward of its own."""

    @staticmethod
    def forward(ctx, *views):
        num = views[0].shape[0]
        centered = views[0].new_empty((len(views), *views[0].shape))
        for view, out in zip(views, centered):
            torch.sub(view, view.mean(dim=0), out=out)
        ctx.save_for_backward(centered)
        return torch.bmm(centered.transpose(1, 2), centered).div_(num - 1)

    @staticmethod
    def backward(ctx, grad_cov):
        (centered,) = ctx.saved_tensors
        symmetric = (grad_cov + grad_cov.transpose(1, 2)).div_(centered.shape[1] - 1)
        return tuple(torch.bmm(centered, symmetric).unbind())
