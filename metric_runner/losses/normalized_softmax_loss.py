import torch
import torch.nn.functional as F

from ..distances import DotProductSimilarity
from ..distances.l2_normalize import l2_normalize_rows
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from ..utils.linear_cross_entropy import linear_cross_entropy
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

    def uses_dot_product(self):
        """Whether the logits are plain dot products, computed without the distance's forward
        (which runs when it records statistics)."""
        distance = self.distance
        return (
            isinstance(distance, DotProductSimilarity)
            and distance.power == 1
            and not distance.collect_stats
        )

    def unit_classes(self, embeddings):
        """The class weights as (num_classes, embedding_size) unit rows."""
        return l2_normalize_rows(self.cast_weight_like(self.W, embeddings).t())

    def scaled_classes(self, embeddings):
        """Unit class rows divided by T: the dot products with them are the logits, so 1/T
        costs a pass over the (num_classes, embedding_size) weights, not the (N, C) logits."""
        return self.unit_classes(embeddings) / self.temperature

    def get_logits(self, embeddings):
        """(N, num_classes) logits sim(x, W_j) / T; the class weights are always unit vectors,
        the embeddings as the distance normalizes them."""
        if self.uses_dot_product():
            return torch.matmul(
                self.distance.maybe_normalize(embeddings), self.scaled_classes(embeddings).t()
            )
        mat = self.distance(embeddings, self.unit_classes(embeddings))
        if not self.distance.is_inverted:
            mat = -mat
        return mat / self.temperature

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        labels = self.checked_labels(embeddings, labels, ref_emb)
        miner_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=embeddings.dtype)
        if self.uses_dot_product():
            losses = linear_cross_entropy(
                self.distance.maybe_normalize(embeddings), self.scaled_classes(embeddings), labels
            )
        else:
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
