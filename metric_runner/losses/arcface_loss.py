import math

import torch

from .large_margin_softmax_loss import LargeMarginSoftmaxLoss


class ArcFaceLoss(LargeMarginSoftmaxLoss):
    """Additive Angular Margin Loss: Deng et al., "ArcFace: Additive Angular Margin Loss for Deep
    Face Recognition", CVPR 2019.

    Cross-entropy over s·cos θ_j (unit-norm embeddings and weights) with the target logit
    s·cos(θ_y + m); `margin` is given in degrees (28.6° ≈ 0.5 rad) and stored in radians.
    Where θ_y + m would pass π, cos(θ_y + m) stops decreasing, so the target logit continues as
    s·(cos θ_y - m·sin m) instead, as in the paper's reference implementation.
    """

    def __init__(self, num_classes, embedding_size, margin=28.6, scale=64, **kwargs):
        super().__init__(num_classes, embedding_size, margin=margin, scale=scale, **kwargs)

    def init_margin(self, margin):
        self.margin = math.radians(margin)

    def get_logits(self, embeddings):
        return self.scaled_cosine(embeddings)

    def target_logit_scale(self, embeddings, labels):
        return self.scale

    def modify_cosine_of_target_classes(self, cosine):
        return _CosineWithAngularMargin.apply(cosine, self.margin)


class _CosineWithAngularMargin(torch.autograd.Function):
    """cos(θ + m) from c = cos θ: c cos m - sin θ sin m, without arccos, and c - m sin m past
    θ + m = π. The floor on sin²θ keeps the gradient finite where c = ±1 (arccos's derivative is
    infinite there). Its derivative is written out: as separate autograd steps, these (N,)
    vectors cost about thirty small operations per call."""

    @staticmethod
    def forward(ctx, cosine, margin):
        sin_squared = torch.clamp(1 - cosine * cosine, min=torch.finfo(cosine.dtype).eps)
        sin_theta = torch.sqrt(sin_squared)
        cos_with_margin = cosine * math.cos(margin) - sin_theta * math.sin(margin)
        past_pi = cosine <= math.cos(math.pi - margin)
        ctx.save_for_backward(cosine, sin_theta, past_pi)
        ctx.margin = margin
        return torch.where(past_pi, cosine - margin * math.sin(margin), cos_with_margin)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        cosine, sin_theta, past_pi = ctx.saved_tensors
        margin = ctx.margin
        # d/dc (c cos m - sqrt(max(1 - c², eps)) sin m) = cos m + c sin m / sin θ while 1 - c²
        # is above the floor (clamp passes the gradient at the floor itself), cos m below it.
        above_floor = 1 - cosine * cosine >= torch.finfo(cosine.dtype).eps
        slope = (cosine / sin_theta).mul_(math.sin(margin)).mul_(above_floor)
        slope = slope.add_(math.cos(margin)).masked_fill_(past_pi, 1)
        return grad * slope, None
