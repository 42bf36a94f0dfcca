from .large_margin_softmax_loss import LargeMarginSoftmaxLoss


class CosFaceLoss(LargeMarginSoftmaxLoss):
    """Large Margin Cosine Loss: Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face
    Recognition", CVPR 2018.

    Cross-entropy over s·cos θ_j (unit-norm embeddings and weights) with the target logit
    s·(cos θ_y - m), m = `margin` (a cosine, not an angle).
    """

    def __init__(self, *args, margin=0.35, scale=64, **kwargs):
        super().__init__(*args, margin=margin, scale=scale, **kwargs)

    def init_margin(self, margin):
        self.margin = margin

    def get_logits(self, embeddings):
        return self.scaled_cosine(embeddings)

    def target_logit_scale(self, embeddings, labels):
        return self.scale

    def modify_cosine_of_target_classes(self, cosine):
        return cosine - self.margin
