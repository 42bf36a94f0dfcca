from ..distances import LpDistance
from ..utils import common_functions as c_f
from .base_regularizer import BaseRegularizer


class CenterInvariantRegularizer(BaseRegularizer):
    """Gives every class weight (or embedding) the same norm (Wu et al., "Deep Face
    Recognition with Center Invariant Loss", 2017): l_j = (||w_j||² - mean_k ||w_k||²)² / 4.

    The norm is the distance's Lp norm, so the distance must be an unnormalized LpDistance with
    power 1 (`p` may change).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, LpDistance, normalize_embeddings=False, power=1)

    def get_default_distance(self):
        return LpDistance(normalize_embeddings=False, p=2, power=1)

    def compute_loss(self, weights):
        squared_norms = self.distance.get_norm(weights) ** 2
        deviations = (squared_norms - squared_norms.mean()) ** 2 / 4
        return self.element_loss(deviations, weights)
