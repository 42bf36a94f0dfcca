import torch
import torch.nn.functional as F

from ..utils import common_functions as c_f
from .base_metric_loss_function import BaseMetricLossFunction
from .mixins import WeightRegularizerMixin


class P2SGradLoss(WeightRegularizerMixin, BaseMetricLossFunction):
    """Zhang et al., "P2SGrad: Refined Gradients for Optimizing Deep Face Models", CVPR 2019.

    Mean squared error between cos θ_ij (embedding i, class weight j) and the one-hot target:
    L = 1/(N·C) Σ_ij (cos θ_ij - 1[j = y_i])², whose gradient is P2SGrad's
    (cos θ_ij - 1[j = y_i])·∂cos θ_ij. `weight` has shape (descriptors_dim, num_classes).
    """

    def __init__(self, descriptors_dim, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.set_sizes(num_classes, descriptors_dim)
        self.descriptors_dim = descriptors_dim
        self.weight = self.new_weight(descriptors_dim, num_classes)
        self.add_to_recordable_attributes(
            list_of_names=["descriptors_dim", "num_classes"], is_stat=False
        )

    def get_default_weight_init_func(self):
        return unit_columns_uniform_

    def get_logits(self, embeddings):
        """The (N, num_classes) cosines cos θ_ij (after projecting the weights, see below)."""
        self.project_weight_to_unit_columns()
        weight = self.cast_weight_like(self.weight, embeddings)
        return torch.matmul(F.normalize(embeddings, dim=1), weight)

    def project_weight_to_unit_columns(self):
        """Rescale each class weight to unit norm in place (w / (||w|| + 1e-7), torch.renorm's
        rule), as pytorch-metric-learning does on every call: the weights stay on the unit
        sphere, and the gradient reaching them is (cos θ - target)·x̂ without a 1/||w||."""
        with torch.no_grad():
            self.weight.div_(torch.linalg.vector_norm(self.weight, dim=0) + 1e-7)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if indices_tuple is not None:
            raise ValueError(
                "P2SGradLoss uses every (sample, class) pair, so indices_tuple is not supported."
            )
        labels = self.checked_labels(embeddings, labels, ref_emb)
        self.project_weight_to_unit_columns()
        weight = self.cast_weight_like(self.weight, embeddings)
        loss = CosineResidualMSE.apply(embeddings, weight, labels)
        loss_dict = {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}
        self.add_weight_regularization_to_loss_dict(loss_dict, self.weight.t())
        return loss_dict


def unit_columns_uniform_(weight):
    """Uniform in [-1, 1], then each column (one class) scaled to unit norm."""
    with torch.no_grad():
        weight.uniform_(-1, 1)
        weight.div_(torch.linalg.vector_norm(weight, dim=0, keepdim=True))
    return weight


class CosineResidualMSE(torch.autograd.Function):
    """mean_ij (cos θ_ij - 1[j = y_i])² with cos θ_ij = x̂_i·w_j, and P2SGrad's gradient written
    out: with the residual r_ij = 2(cos θ_ij - 1[j = y_i])/(N·C), ∂/∂w_j = Σ_i r_ij·x̂_i and
    ∂/∂x̂_i = Σ_j r_ij·w_j (then through the normalization of x_i). The backward pass keeps
    only the cosines, and takes about half the time autograd would."""

    @staticmethod
    def forward(ctx, embeddings, weight, labels):
        inv_norms = torch.linalg.vector_norm(embeddings, dim=1, keepdim=True)
        inv_norms = inv_norms.clamp(min=1e-12).reciprocal()
        cosine = torch.matmul(embeddings * inv_norms, weight)
        rows = c_f.torch_arange_from_size(embeddings)
        # Σ(cos - onehot)² = Σcos² - 2Σcos θ_iy + N, summed in at least float32 (a half
        # precision sum over N·C squares would overflow).
        sum_dtype = torch.promote_types(cosine.dtype, torch.float32)
        squares = torch.linalg.vector_norm(cosine, dtype=sum_dtype).square()
        targets = torch.sum(cosine[rows, labels], dtype=sum_dtype)
        loss = (squares - 2 * targets + len(labels)) / cosine.numel()
        ctx.save_for_backward(embeddings, inv_norms, weight, cosine, labels)
        return loss.to(cosine.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        embeddings, inv_norms, weight, cosine, labels = ctx.saved_tensors
        scale = 2 * grad.to(cosine.dtype) / cosine.numel()
        residual = cosine * scale
        rows = c_f.torch_arange_from_size(embeddings)
        residual.index_put_((rows, labels), -scale.expand(len(labels)), accumulate=True)
        # Under autocast the cosines may be half precision while the inputs are not.
        unit = embeddings * inv_norms
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = torch.matmul(unit.t().to(residual.dtype), residual).to(weight.dtype)
        grad_unit = torch.matmul(residual, weight.t().to(residual.dtype)).to(unit.dtype)
        along_unit = torch.sum(grad_unit * unit, dim=1, keepdim=True)
        grad_embeddings = torch.addcmul(grad_unit, unit, along_unit, value=-1).mul_(inv_norms)
        return grad_embeddings, grad_weight, None
