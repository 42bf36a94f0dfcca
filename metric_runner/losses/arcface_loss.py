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
        # cos(θ + m) = cos θ cos m - sin θ sin m, without arccos. The floor on sin²θ keeps the
        # gradient finite where cos θ = ±1 (arccos's derivative is infinite there).
        sin_squared = torch.clamp(1 - cosine * cosine, min=torch.finfo(cosine.dtype).eps)
        cos_with_margin = cosine * math.cos(self.margin) - torch.sqrt(sin_squared) * math.sin(
            self.margin
        )
        past_pi = cosine <= math.cos(math.pi - self.margin)
        return torch.where(past_pi, cosine - self.margin * math.sin(self.margin), cos_with_margin)
