import functools

import torch

from ..distances import CosineSimilarity
from ..reducers import DivisorReducer
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction
from .mixins import WeightRegularizerMixin


class ProxyAnchorLoss(WeightRegularizerMixin, BaseMetricLossFunction):
    """Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020.

    With one proxy p per class, P+ the proxies with a sample in the batch, X_p+ / X_p- the
    samples of / not of p's class, α = `alpha`, δ = `margin`:
    pos_loss = 1/|P+| Σ_p log(1 + Σ_{x∈X_p+} exp(-α(s(x,p) - δ))) and
    neg_loss = 1/|P| Σ_p log(1 + Σ_{x∈X_p-} exp(α(s(x,p) + δ))).
    `proxies` has shape (num_classes, embedding_size).
    """

    def __init__(self, num_classes, embedding_size, margin=0.1, alpha=32, **kwargs):
        super().__init__(**kwargs)
        self.set_sizes(num_classes, embedding_size)
        self.margin = margin
        self.alpha = alpha
        self.proxies = self.new_weight(num_classes, embedding_size)
        self.add_to_recordable_attributes(
            list_of_names=["num_classes", "alpha", "margin"], is_stat=False
        )

    def get_default_distance(self):
        return CosineSimilarity()

    def get_default_reducer(self):
        return DivisorReducer()

    def get_default_weight_init_func(self):
        return functools.partial(torch.nn.init.kaiming_normal_, mode="fan_out")

    def _sub_loss_names(self):
        return ["pos_loss", "neg_loss"]

    def get_logits(self, embeddings):
        """The (N, num_classes) similarity (or distance) matrix to the proxies."""
        return self.distance(embeddings, self.cast_weight_like(self.proxies, embeddings))

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        labels = self.checked_labels(embeddings, labels, ref_emb)
        # Miner weights w in [0, 1] enter the exponents as w - 1, as in pytorch-metric-learning.
        miner_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=embeddings.dtype)
        exponent_offsets = miner_weights - 1
        mat = self.get_logits(embeddings)
        rows = c_f.torch_arange_from_size(embeddings)
        pos_exponents = (
            self.alpha * self.distance.margin(mat[rows, labels], self.margin) + exponent_offsets
        )
        neg_exponents = self.distance.margin(-self.margin, mat).mul_(self.alpha)
        neg_exponents.add_(exponent_offsets.unsqueeze(1))
        # Each sample's own proxy is its one positive: drop it from the negatives (in place on
        # a fresh tensor, instead of a mask per sample and class).
        neg_exponents.scatter_(1, labels.unsqueeze(1), c_f.neg_inf(mat.dtype))
        neg_losses = log_one_plus_sum_exp(neg_exponents, dim=0)
        pos_losses = log_one_plus_sum_exp_by_class(pos_exponents, labels, self.num_classes)
        # A scatter, not bincount: bincount synchronises with the GPU to size its output.
        has_positives = torch.zeros(self.num_classes, dtype=torch.bool, device=labels.device)
        num_pos_proxies = torch.sum(has_positives.scatter_(0, labels, True))
        proxy_indices = c_f.torch_arange_from_size(self.proxies)
        loss_dict = {
            "pos_loss": {
                "losses": pos_losses,
                "indices": proxy_indices,
                "reduction_type": "element",
                "divisor": num_pos_proxies,
            },
            "neg_loss": {
                "losses": neg_losses,
                "indices": proxy_indices,
                "reduction_type": "element",
                "divisor": self.num_classes,
            },
        }
        self.add_weight_regularization_to_loss_dict(loss_dict, self.proxies)
        return loss_dict


def log_one_plus_sum_exp(x, dim):
    """log(1 + Σ exp(x)) along `dim`; entries at the dtype's lowest value count as absent."""
    lse = torch.logsumexp(x, dim=dim)
    return torch.logaddexp(lse, torch.zeros_like(lse))


def log_one_plus_sum_exp_by_class(x, labels, num_classes):
    """(num_classes,) log(1 + Σ_{i: labels_i = c} exp(x_i)); 0 for a class without samples.
    Shifting by max(0, max x_i) keeps it finite, and the 1 makes an empty sum safe."""
    shift = torch.zeros(num_classes, dtype=x.dtype, device=x.device)
    shift = shift.scatter_reduce(0, labels, x.detach(), reduce="amax")
    sums = torch.exp(-shift).index_add(0, labels, torch.exp(x - shift[labels]))
    return torch.log(sums) + shift
