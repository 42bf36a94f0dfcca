import torch
import torch.nn.functional as F

from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from ..utils.linear_cross_entropy import HALF_DTYPES, linear_cross_entropy
from .base_metric_loss_function import BaseMetricLossFunction


class InstanceLoss(BaseMetricLossFunction):
    """Instance loss (Zheng et al., "Dual-Path Convolutional Image-Text Embeddings with Instance
    Loss", ACM TOMM 2020), in PML's form: the batch's scaled cosine similarities γ cos(x_i, x_j)
    are the logits of a softmax over the batch, and sample i's target is the column given by
    the rank of its label among the batch's distinct labels (the sample itself when every label
    is distinct): loss_i = −log softmax_j(γ cos(x_i, x_j))[rank(y_i)].
    """

    def __init__(self, gamma=64, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, CosineSimilarity)
        self.gamma = gamma
        self.add_to_recordable_attributes(name="gamma", is_stat=False)

    def check_labels_available(self, labels, indices_tuple):
        if labels is None:
            raise ValueError("InstanceLoss needs labels: they pick each sample's target column.")

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if indices_tuple is not None:
            raise ValueError(
                "InstanceLoss does not support indices_tuple: every sample is a query."
            )
        if ref_emb is not embeddings:
            raise ValueError(
                "InstanceLoss does not support ref_emb: the batch is its own set of classes."
            )
        targets = torch.unique(labels, return_inverse=True)[1]
        indices = c_f.torch_arange_from_size(embeddings)
        return {
            "loss": {
                "losses": self.per_sample_losses(embeddings, targets),
                "indices": indices,
                "reduction_type": "element",
            }
        }

    def per_sample_losses(self, embeddings, targets):
        distance = self.distance
        # The fused path skips the distance's forward, so not when it records statistics.
        if (
            type(distance) is CosineSimilarity
            and distance.power == 1
            and not distance.collect_stats
        ):
            # γ cos(x_i, x_j) = (γ x̂_i) · x̂_j: γ scales the (N, d) rows, not the (N, N) logits.
            normalized = distance.normalize(embeddings)
            return linear_cross_entropy(self.gamma * normalized, normalized, targets)
        logits = self.gamma * distance(embeddings)
        # Half precision cannot hold exp(64): the softmax runs in float32 at least.
        work = logits.float() if logits.dtype in HALF_DTYPES else logits
        return F.cross_entropy(work, targets, reduction="none").to(logits.dtype)

    def get_default_distance(self):
        return CosineSimilarity()
