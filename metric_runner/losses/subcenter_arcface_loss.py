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
        return _MaxOverSubCenters.apply(self.scaled_cosine_by_sub_center(embeddings))

    def scaled_cosine_by_sub_center(self, embeddings):
        """(N, sub_centers, num_classes) s·cos θ: the weight columns are regrouped sub-center
        first, so that the maximum runs over whole (N, num_classes) slices rather than over
        a tiny innermost dimension."""
        dim = self.W.shape[0]
        W = self.cast_weight_like(self.W, embeddings)
        W = W.view(dim, self.num_classes, self.sub_centers).transpose(1, 2)
        W = self.distance.normalize(W.reshape(dim, -1), dim=0)
        cosines = torch.matmul(self.distance.normalize(embeddings), self.scale * W)
        return cosines.view(-1, self.sub_centers, self.num_classes)

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


class _MaxOverSubCenters(torch.autograd.Function):
    """x.amax(dim=1) for x (N, K, C), K small, whose gradient goes to the maximal sub-center
    (shared evenly in a tie, as amax's). torch's max with indices is a slow reduction here.
    Only a one-byte mask of the maxima is kept for backward, neither x nor the output, so the
    caller may write into the output in place. On CPU, bool-to-float conversion and
    mixed-dtype arithmetic take slow paths, so backward reads the mask as int8 and converts it
    once."""

    @staticmethod
    def forward(ctx, x):
        best = x.amax(dim=1)
        is_best = x == best.unsqueeze(1)
        ctx.save_for_backward(is_best)
        return best

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_best):
        (is_best,) = ctx.saved_tensors
        # One conversion, then same-dtype arithmetic in place (mixed-dtype products are slow,
        # and every (N, C) temporary counts at 10,000 classes).
        grad_x = is_best.view(torch.int8).to(grad_best.dtype)
        share = grad_x.sum(dim=1).reciprocal_().mul_(grad_best)
        return grad_x.mul_(share.unsqueeze(1))
