import math

import torch
import torch.nn.functional as F

from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction
from .mixins import WeightRegularizerMixin


class LargeMarginSoftmaxLoss(WeightRegularizerMixin, BaseMetricLossFunction):
    """L-Softmax: Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks",
    ICML 2016.

    Cross-entropy over the logits s·||W_j||·||x||·cos θ_j in which the target class's cos θ_y is
    replaced by ψ(θ_y) = (-1)^k cos(mθ_y) - 2k for θ_y in [kπ/m, (k+1)π/m] (m = `margin`, an
    integer; s = `scale`). The class weights `W` have shape (embedding_size, num_classes).

    Subclasses (SphereFace, CosFace, ArcFace) change the target transform
    (`modify_cosine_of_target_classes`) and which norms scale the logits (`get_logits`,
    `target_logit_scale`).
    """

    def __init__(self, num_classes, embedding_size, margin=4, scale=1, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, CosineSimilarity, power=1)
        self.set_sizes(num_classes, embedding_size)
        self.scale = scale
        self.init_margin(margin)
        self.W = self.new_weight(embedding_size, self.num_weight_columns())
        self.add_to_recordable_attributes(
            list_of_names=["num_classes", "margin", "scale"], is_stat=False
        )
        self.add_to_recordable_attributes(name="avg_angle", is_stat=True)

    def get_default_distance(self):
        return CosineSimilarity()

    def num_weight_columns(self):
        return self.num_classes

    def init_margin(self, margin):
        if isinstance(margin, bool) or not float(margin).is_integer() or margin < 1:
            raise ValueError(
                f"{type(self).__name__} multiplies the target angle by margin, which must be a "
                f"positive integer (the paper uses 2, 3 or 4), got {margin!r}."
            )
        self.margin = int(margin)
        # cos(jπ/m): the target angle lies in the k-th interval [kπ/m, (k+1)π/m] exactly when
        # k of these thresholds are >= cos θ, so k needs no arccos.
        self.interval_thresholds = [
            math.cos(j * math.pi / self.margin) for j in range(1, self.margin)
        ]

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        labels = self.checked_labels(embeddings, labels, ref_emb)
        miner_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=embeddings.dtype)
        logits = self.get_margin_logits(embeddings, labels)
        losses = F.cross_entropy(logits, labels, reduction="none") * miner_weights
        loss_dict = {
            "loss": {
                "losses": losses,
                "indices": c_f.torch_arange_from_size(embeddings),
                "reduction_type": "element",
            }
        }
        self.add_weight_regularization_to_loss_dict(loss_dict, self.W.t())
        return loss_dict

    # The scale multiplies the (embedding_size, C) weights rather than the (N, C) logits: the
    # same numbers for one pass over far fewer elements, forward and backward.

    def get_logits(self, embeddings):
        """The scaled logits without margin, (N, num_classes): s·||x||·||W_j||·cos θ_j."""
        return torch.matmul(embeddings, self.scale * self.cast_weight_like(self.W, embeddings))

    def scaled_cosine(self, embeddings):
        """(N, weight columns) s·cos θ between embeddings and every weight column."""
        W = self.distance.normalize(self.cast_weight_like(self.W, embeddings), dim=0)
        return torch.matmul(self.distance.normalize(embeddings), self.scale * W)

    def target_logit_scale(self, embeddings, labels):
        """(N,) factor between the target logit and cos θ_y: s·||x||·||W_y||."""
        weight_norms = self.distance.get_norm(self.cast_weight_like(self.W, embeddings), dim=0)
        return self.scale * self.distance.get_norm(embeddings) * weight_norms[labels]

    def get_margin_logits(self, embeddings, labels):
        """`get_logits` with each row's target logit replaced by its margin version."""
        logits = self.get_logits(embeddings)
        rows = c_f.torch_arange_from_size(embeddings)
        target_scale = self.target_logit_scale(embeddings, labels)
        # A zero embedding or weight has zero scale and logit: read its cosine as 0, not 0/0.
        denominator = (
            target_scale.clamp(min=c_f.small_val(logits.dtype))
            if torch.is_tensor(target_scale)
            else target_scale
        )
        target_cosine = logits[rows, labels] / denominator
        if self.collect_stats:
            self.set_avg_angle(target_cosine)
        target_logits = self.modify_cosine_of_target_classes(target_cosine) * target_scale
        # Under autocast the norms come out in float32 while the logits may be half precision.
        target_logits = target_logits.to(logits.dtype)
        # In place: `logits` is a fresh tensor that no autograd node saved, and this avoids
        # two more (N, num_classes) tensors (a one-hot mask and the blended copy).
        return logits.scatter_(1, labels.unsqueeze(1), target_logits.unsqueeze(1))

    def set_avg_angle(self, target_cosine):
        """The mean angle, in degrees, between each embedding and its class weight."""
        with torch.no_grad():
            angles = torch.rad2deg(torch.acos(target_cosine.float().clamp(-1, 1)))
            self.avg_angle = angles.mean().item()

    def modify_cosine_of_target_classes(self, cosine):
        """ψ(θ) = (-1)^k cos(mθ) - 2k, with cos(mθ) the Chebyshev polynomial T_m(cos θ), so
        neither the value nor its gradient goes through arccos."""
        k = torch.zeros_like(cosine)
        for threshold in self.interval_thresholds:
            k = k + (cosine <= threshold).to(cosine.dtype)
        sign = 1 - 2 * torch.remainder(k, 2)
        return sign * chebyshev(cosine, self.margin) - 2 * k


def chebyshev(x, degree):
    """T_degree(x) by the recurrence T_{n+1} = 2x·T_n - T_{n-1}; cos(nθ) = T_n(cos θ)."""
    previous, current = torch.ones_like(x), x
    for _ in range(degree - 1):
        previous, current = current, 2 * x * current - previous
    return current
