import torch
import torch.nn.functional as F

from ..distances import DotProductSimilarity
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction
from .mixins import WeightRegularizerMixin


class NormalizedSoftmaxLoss(WeightRegularizerMixin, BaseMetricLossFunction):
    """Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019.

    Cross-entropy over sim(x, W_j) / T, T = `temperature`, with unit-norm class weights `W`
    (embedding_size, num_classes) and, under the default distance, unit-norm embeddings. A
    distance (not a similarity) enters negated, so the closest class gets the largest logit.
    """

    def __init__(self, num_classes, embedding_size, temperature=0.05, **kwargs):
        super().__init__(**kwargs)
        self.set_sizes(num_classes, embedding_size)
        self.temperature = temperature
        self.W = self.new_weight(embedding_size, num_classes)
        self.add_to_recordable_attributes(
            list_of_names=["num_classes", "embedding_size", "temperature"], is_stat=False
        )

    def get_default_distance(self):
        return DotProductSimilarity()

    def get_logits(self, embeddings):
        """(N, num_classes) logits sim(x, W_j) / T; the class weights are always unit vectors,
        the embeddings as the distance normalizes them."""
        W = F.normalize(self.cast_weight_like(self.W, embeddings), dim=0)
        if isinstance(self.distance, DotProductSimilarity) and self.distance.power == 1:
            # The same dot products with 1/T folded into the (embedding_size, C) weights, so
            # no pass over the (N, C) logits is spent on it.
            return torch.matmul(self.distance.maybe_normalize(embeddings), W / self.temperature)
        mat = self.distance(embeddings, W.t())
        if not self.distance.is_inverted:
            mat = -mat
        return mat / self.temperature

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        labels = self.checked_labels(embeddings, labels, ref_emb)
        miner_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=embeddings.dtype)
        losses = F.cross_entropy(self.get_logits(embeddings), labels, reduction="none")
        loss_dict = {
            "loss": {
                "losses": losses * miner_weights,
                "indices": c_f.torch_arange_from_size(embeddings),
                "reduction_type": "element",
            }
        }
        self.add_weight_regularization_to_loss_dict(loss_dict, self.W.t())
        return loss_dict
