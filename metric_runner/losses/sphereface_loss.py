import torch

from .large_margin_softmax_loss import LargeMarginSoftmaxLoss


class SphereFaceLoss(LargeMarginSoftmaxLoss):
    """A-Softmax: Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition",
    CVPR 2017.

    L-Softmax with unit-norm class weights: logits s·||x||·cos θ_j, the target's cos θ_y
    replaced by ψ(θ_y) = (-1)^k cos(mθ_y) - 2k (m = `margin`, an integer).
    """

    def get_logits(self, embeddings):
        W = self.distance.normalize(self.cast_weight_like(self.W, embeddings), dim=0)
        return torch.matmul(embeddings, self.scale * W)

    def target_logit_scale(self, embeddings, labels):
        return self.scale * self.distance.get_norm(embeddings)
