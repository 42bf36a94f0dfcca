import torch
import torch.nn.functional as F

from ..distances import LpDistance
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .mixins import WeightRegularizerMixin
from .nca_loss import NCALoss


class ProxyNCALoss(WeightRegularizerMixin, NCALoss):
    """Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies", ICCV 2017.

    NCALoss against one learned proxy per class: loss_i = -log softmax_j(-s·d(x_i, p_j))[y_i]
    with s = `softmax_scale` (an NCALoss argument) and d the squared Euclidean distance of unit
    vectors by default (a similarity enters un-negated). `proxies` has shape (num_classes,
    embedding_size).
    """

    def __init__(self, num_classes, embedding_size, **kwargs):
        super().__init__(**kwargs)
        self.set_sizes(num_classes, embedding_size)
        self.proxies = self.new_weight(num_classes, embedding_size)
        # Proxy j stands for class j (PML's public attribute); not saved in the state dict.
        self.register_buffer("proxy_labels", torch.arange(num_classes), persistent=False)
        self.add_to_recordable_attributes(name="num_classes", is_stat=False)

    def get_logits(self, embeddings):
        """The (N, num_classes) distance (or similarity) matrix to the proxies."""
        return self.distance(embeddings, self.cast_weight_like(self.proxies, embeddings))

    def get_softmax_logits(self, embeddings):
        """(N, num_classes) logits whose softmax is the NCA class probability: s·sim, or -s·d."""
        proxies = self.cast_weight_like(self.proxies, embeddings)
        if self.is_squared_euclidean_of_unit_vectors():
            # ||x - p||² = 2 - 2 x·p for unit vectors, and a softmax ignores the constant, so
            # the logits are (2s)·x·p: one matrix product, no (N, C) distance pass.
            proxies = self.distance.normalize(proxies) * (2 * self.softmax_scale)
            return torch.matmul(self.distance.normalize(embeddings), proxies.t())
        mat = self.distance(embeddings, proxies)
        return self.softmax_scale * (mat if self.distance.is_inverted else -mat)

    def is_squared_euclidean_of_unit_vectors(self):
        distance = self.distance
        return (
            type(distance) is LpDistance
            and distance.normalize_embeddings
            and distance.p == 2
            and distance.power == 2
        )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        labels = self.checked_labels(embeddings, labels, ref_emb)
        # A mined tuple weights each sample by how often it is an anchor (positives and
        # negatives are proxies here, not batch samples).
        anchors = None if indices_tuple is None else anchor_indices(indices_tuple, labels)
        miner_weights = lmu.convert_to_weights(anchors, labels, dtype=embeddings.dtype)
        logits = self.get_softmax_logits(embeddings)
        loss_dict = {
            "loss": {
                "losses": F.cross_entropy(logits, labels, reduction="none") * miner_weights,
                "indices": c_f.torch_arange_from_size(embeddings),
                "reduction_type": "element",
            }
        }
        self.add_weight_regularization_to_loss_dict(loss_dict, self.proxies)
        return loss_dict


def anchor_indices(indices_tuple, labels):
    a1, _, a2, _ = lmu.convert_to_pairs(indices_tuple, labels)
    return a1, a2
