import torch

from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from .base_regularizer import BaseRegularizer


class RegularFaceRegularizer(BaseRegularizer):
    """Pushes each class weight away from its nearest other class (Zhao et al., "RegularFace:
    Deep Face Recognition via Exclusive Regularization", CVPR 2019): l_i = max_{j != i} s(w_i, w_j),
    averaged over classes. The distance must be a similarity (CosineSimilarity by default)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, is_inverted=True)

    def get_default_distance(self):
        return CosineSimilarity()

    def compute_loss(self, weights):
        similarities = self.distance(weights)
        num_classes = len(weights)
        # With a single class there is no other class; its own similarity is kept, as in PML.
        if num_classes > 1:
            is_self = torch.eye(num_classes, dtype=torch.bool, device=weights.device)
            similarities = similarities.masked_fill(is_self, c_f.neg_inf(similarities.dtype))
        return self.element_loss(torch.max(similarities, dim=1)[0], weights)
