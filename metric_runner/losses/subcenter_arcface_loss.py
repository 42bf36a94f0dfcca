import math

import torch

from ..utils import common_functions as c_f
from .arcface_loss import ArcFaceLoss


class SubCenterArcFaceLoss(ArcFaceLoss):
    """Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-Scale Noisy Web
    Faces", ECCV 2020.

    ArcFace in which each class has `sub_centers` weight vectors and cos θ_j is the largest
    cosine to any of class j's sub-centers. `W` has shape (embedding_size,
    num_classes·sub_centers); class j owns columns j·sub_centers ... (j+1)·sub_centers - 1.
    """

    def __init__(self, *args, margin=28.6, scale=64, sub_centers=3, **kwargs):
        self.check_positive_int("sub_centers", sub_centers)
        # Set before the base initializer, which sizes W from it.
        self.sub_centers = sub_centers
        super().__init__(*args, margin=margin, scale=scale, **kwargs)
        self.add_to_recordable_attributes(name="sub_centers", is_stat=False)

    def num_weight_columns(self):
        return self.num_classes * self.sub_centers

    def get_logits(self, embeddings):
        """s·cos θ_j with θ_j the angle to class j's nearest sub-center, (N, num_classes)."""
        return _MaxOverSubCenterCosines.apply(
            self.distance.normalize(embeddings),
            self.scaled_unit_weights_by_sub_center(embeddings),
            self.sub_centers,
        )

    def scaled_unit_weights_by_sub_center(self, embeddings):
        """(embedding_size, sub_centers·num_classes) s·W/||W|| column by column, regrouped sub-center
        first (column k·num_classes + j is class j's sub-center k), so that the maximum over
        sub-centers runs over whole (N, num_classes) slices rather than over a tiny innermost
        dimension."""
        W = self.cast_weight_like(self.W, embeddings)
        if self.distance.p == 2:
            return _ScaledUnitColumnsBySubCenter.apply(W, self.sub_centers, self.scale)
        dim = W.shape[0]
        W = W.view(dim, self.num_classes, self.sub_centers).transpose(1, 2)
        return self.scale * self.distance.normalize(W.reshape(dim, -1), dim=0)

    def get_outliers(self, embeddings, labels, threshold=75, return_dominant_centers=True):
        """Samples farther than `threshold` degrees from their class's dominant sub-center (the
        one nearest to most of the class's samples), as the paper uses to drop noisy labels.

        Returns the outliers' indices grouped by class (then by position), and, when
        `return_dominant_centers`, the (embedding_size, num_classes) dominant sub-centers; a
        class without samples gets its first sub-center.
        """
        c_f.check_shapes(embeddings, labels)
        labels = labels.to(embeddings.device)
        labels = self.checked_labels(embeddings, labels, embeddings)
        with torch.no_grad():
            sub_center_cosines = self.scaled_cosine(embeddings).view(
                -1, self.num_classes, self.sub_centers
            )
            cosines = (
                sub_center_cosines[c_f.torch_arange_from_size(embeddings), labels] / self.scale
            )
            nearest = cosines.argmax(dim=1)
            votes = torch.zeros(self.num_classes, self.sub_centers, device=labels.device)
            votes.index_put_(
                (labels, nearest), torch.ones_like(labels, dtype=votes.dtype), accumulate=True
            )
            dominant = votes.argmax(dim=1)
            cosine_to_dominant = cosines.gather(1, dominant[labels].unsqueeze(1)).squeeze(1)
            outliers = torch.where(cosine_to_dominant < math.cos(math.radians(threshold)))[0]
            outliers = outliers[torch.argsort(labels[outliers], stable=True)]
            if not return_dominant_centers:
                return outliers
            centers = (
                self.cast_weight_like(self.W, embeddings)
                .t()
                .view(self.num_classes, self.sub_centers, -1)
            )
            dominant_centers = centers[
                torch.arange(self.num_classes, device=labels.device), dominant
            ].t()
        return outliers, dominant_centers


class _MaxOverSubCenterCosines(torch.autograd.Function):
    """(x @ W).view(N, K, C).amax(dim=1) for x (N, D) and W (D, K·C) grouped sub-center first,
    whose gradient goes to the maximal sub-center (shared evenly in a tie, as amax's).

    torch's max with indices is a slow reduction here, and amax first fills its output: K - 1
    elementwise maxima of (N, C) slices are one pass each. Only a one-byte mask of the maxima is
    kept for backward, neither the (N, K·C) cosines nor the output, so the caller may write into
    the output in place. Backward never builds the (N, K·C) gradient of the cosines: sub-center
    by sub-center, one reused (N, C) buffer holds its share and two matrix products consume it
    (at 10,000 classes that gradient is 123 MB, and allocating it costs as much as its math).
    """

    @staticmethod
    def forward(ctx, x, W, sub_centers):
        cosines = torch.matmul(x, W).view(len(x), sub_centers, -1)
        best = (
            cosines[:, 0].clone()
            if sub_centers == 1
            else torch.maximum(cosines[:, 0], cosines[:, 1])
        )
        for k in range(2, sub_centers):
            torch.maximum(best, cosines[:, k], out=best)
        is_best = cosines == best.unsqueeze(1)
        ctx.save_for_backward(x, W, is_best)
        return best

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_best):
        x, W, is_best = ctx.saved_tensors
        # Under autocast the product ran in grad_best's dtype; its gradients do too, and are
        # returned in the inputs' own dtypes, as autocast's casts would.
        x_used, W_used = x.to(grad_best.dtype), W.to(grad_best.dtype)
        share = _share_of_each_maximum(is_best, grad_best)
        grad_x = torch.zeros_like(x_used) if ctx.needs_input_grad[0] else None
        grad_W = torch.empty_like(W_used) if ctx.needs_input_grad[1] else None
        grad_cosines = torch.empty_like(share)
        num_classes = share.shape[1]
        for k in range(is_best.shape[1]):
            columns = slice(k * num_classes, (k + 1) * num_classes)
            # Bytes to float converts faster than booleans to float on CPU.
            grad_cosines.copy_(is_best[:, k].view(torch.int8)).mul_(share)
            if grad_W is not None:
                torch.mm(x_used.t(), grad_cosines, out=grad_W[:, columns])
            if grad_x is not None:
                grad_x.addmm_(grad_cosines, W_used[:, columns].t())
        return (
            None if grad_x is None else grad_x.to(x.dtype),
            None if grad_W is None else grad_W.to(W.dtype),
            None,
        )


def _share_of_each_maximum(is_best, grad_best):
    """grad_best / (number of sub-centers tied at the maximum), (N, C). The ties are counted as
    bytes, one slice added at a time (a sum of booleans would first copy them to int64; a byte
    sum over the middle dimension is slow for few classes), then divided in place in the
    gradient's dtype (mixed-dtype arithmetic takes a slow path on CPU)."""
    as_bytes = is_best.view(torch.uint8)
    ties = as_bytes[:, 0].to(torch.uint8 if is_best.shape[1] < 256 else torch.int32, copy=True)
    for k in range(1, is_best.shape[1]):
        ties.add_(as_bytes[:, k])
    ties = ties.to(grad_best.dtype)
    return torch.div(grad_best, ties, out=ties)


class _ScaledUnitColumnsBySubCenter(torch.autograd.Function):
    """scale · W / ||W||₂ column by column (as F.normalize(W, dim=0), norms clamped at 1e-12),
    for W (D, C·K) whose class j owns columns j·K ... j·K + K - 1, returned regrouped sub-center
    first: column k·C + j is class j's sub-center k. One elementwise pass writes the regrouped
    result, and backward is the projection formula in two passes, where normalize, regroup and
    scale as separate autograd steps copy the (D, C·K) weights about ten times."""

    EPS = 1e-12

    @staticmethod
    def forward(ctx, W, sub_centers, scale):
        dim = W.shape[0]
        norms = torch.linalg.vector_norm(W, dim=0, keepdim=True)
        factors = scale / norms.clamp_min(_ScaledUnitColumnsBySubCenter.EPS)
        scaled = W.new_empty(dim, sub_centers, W.shape[1] // sub_centers)
        torch.mul(_by_sub_center(W, sub_centers), _by_sub_center(factors, sub_centers), out=scaled)
        ctx.save_for_backward(W, norms, factors)
        ctx.sub_centers = sub_centers
        return scaled.view(dim, -1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_scaled):
        W, norms, factors = ctx.saved_tensors
        sub_centers, eps = ctx.sub_centers, _ScaledUnitColumnsBySubCenter.EPS
        grad_scaled = grad_scaled.reshape(W.shape[0], sub_centers, -1)
        columns = _by_sub_center(W, sub_centers)
        factors = _by_sub_center(factors, sub_centers)[0]
        norms = _by_sub_center(norms, sub_centers)[0]
        # y = s·w/n has gradient f·(g - ŵ (ŵ·g)) with f = s/n and ŵ = w/n: f·g - w·(w·g)·f/n².
        # Where the norm was clamped, y = s·w/eps is linear in w: f·g alone.
        projection = (grad_scaled * columns).sum(dim=0).mul_(factors).div_(norms.square())
        projection.masked_fill_(norms < eps, 0)
        grad_W = torch.empty_like(W, memory_format=torch.contiguous_format)
        grad_columns = _by_sub_center(grad_W, sub_centers)
        torch.mul(grad_scaled, factors, out=grad_columns)
        grad_columns.addcmul_(columns, projection, value=-1)
        return grad_W, None, None


def _by_sub_center(columns, sub_centers):
    """(D, C·K) columns, class-major, as a (D, K, C) view: [:, k, j] is class j's sub-center k."""
    return columns.view(columns.shape[0], -1, sub_centers).transpose(1, 2)
