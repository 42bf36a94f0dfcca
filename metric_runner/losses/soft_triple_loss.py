import functools
import math

import torch
import torch.nn.functional as F

from ..distances import CosineSimilarity
from ..regularizers import SparseCentersRegularizer
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from ..utils.errors import InvalidArgumentError
from .base_metric_loss_function import BaseMetricLossFunction
from .mixins import WeightRegularizerMixin


class SoftTripleLoss(WeightRegularizerMixin, BaseMetricLossFunction):
    """Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling", ICCV 2019.

    Each class c has K = `centers_per_class` centers; the relaxed similarity is
    S_c = Σ_k softmax_k(s_ck / γ)·s_ck, and the loss is cross-entropy over λ·S_c with the
    target's S_y lowered by δ (λ = `la`, γ = `gamma`, δ = `margin`). The paper's center
    regularizer (eq. 11; its weight is τ) is SparseCentersRegularizer: `reg_weight=τ` adds it,
    sized from this loss's classes and centers (the argument PML had before 1.0, which "A Metric
    Learning Reality Check" tuned), or pass one yourself as `weight_regularizer`. The default 0
    adds none, as PML today.
    `fc` has shape (embedding_size, num_classes·centers_per_class); class c owns columns
    c·K ... (c+1)·K - 1.
    """

    def __init__(
        self,
        num_classes,
        embedding_size,
        centers_per_class=10,
        la=20,
        gamma=0.1,
        margin=0.01,
        reg_weight=0,
        **kwargs,
    ):
        if reg_weight:
            kwargs = with_center_regularizer(kwargs, num_classes, centers_per_class, reg_weight)
        super().__init__(**kwargs)
        if not self.distance.is_inverted:
            raise InvalidArgumentError(
                f"SoftTripleLoss needs a similarity (larger = closer) such as CosineSimilarity, "
                f"got {type(self.distance).__name__}."
            )
        self.check_positive_int("centers_per_class", centers_per_class)
        self.set_sizes(num_classes, embedding_size)
        self.centers_per_class = centers_per_class
        self.la = la
        self.gamma = gamma
        self.margin = margin
        self.fc = self.new_weight(embedding_size, num_classes * centers_per_class)
        self.add_to_recordable_attributes(
            list_of_names=[
                "la",
                "gamma",
                "margin",
                "centers_per_class",
                "num_classes",
                "embedding_size",
            ],
            is_stat=False,
        )

    def get_default_distance(self):
        return CosineSimilarity()

    def get_default_weight_init_func(self):
        return functools.partial(torch.nn.init.kaiming_uniform_, a=math.sqrt(5))

    def get_logits(self, embeddings):
        """The (N, num_classes) relaxed class similarities S_c. The centers are regrouped
        center-rank first, (N, K, C), so the softmax over a class's K centers runs across
        whole (N, C) slices; over a tiny innermost dimension it is ~4x slower on CPU."""
        dim, k = self.embedding_size, self.centers_per_class
        fc = self.cast_weight_like(self.fc, embeddings)
        by_rank = fc.view(dim, self.num_classes, k).transpose(1, 2).reshape(dim, -1)
        sim_to_centers = self.distance(embeddings, by_rank.t()).view(-1, k, self.num_classes)
        return RelaxedSimilarity.apply(sim_to_centers, self.gamma)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        labels = self.checked_labels(embeddings, labels, ref_emb)
        miner_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=embeddings.dtype)
        logits = self.la * self.get_logits(embeddings)
        target_shift = torch.full_like(
            labels, -self.la * self.margin, dtype=logits.dtype
        ).unsqueeze(1)
        logits.scatter_add_(1, labels.unsqueeze(1), target_shift)
        loss_dict = {
            "loss": {
                "losses": F.cross_entropy(logits, labels, reduction="none") * miner_weights,
                "indices": c_f.torch_arange_from_size(embeddings),
                "reduction_type": "element",
            }
        }
        self.add_weight_regularization_to_loss_dict(loss_dict, self.fc.t())
        return loss_dict


def with_center_regularizer(kwargs, num_classes, centers_per_class, reg_weight):
    """The base classes' arguments with the paper's center regularizer weighted by reg_weight."""
    if kwargs.get("weight_regularizer") is not None:
        raise InvalidArgumentError(
            "SoftTripleLoss: give reg_weight (the paper's center regularizer) or a "
            "weight_regularizer, not both; to weight your own regularizer use weight_reg_weight."
        )
    regularizer = SparseCentersRegularizer(
        num_classes=num_classes, centers_per_class=centers_per_class
    )
    return {**kwargs, "weight_regularizer": regularizer, "weight_reg_weight": reg_weight}


class RelaxedSimilarity(torch.autograd.Function):
    """S = Σ_k softmax_k(s_k / γ)·s_k over dimension 1 of (N, K, C), with the closed-form
    gradient ∂S/∂s_k = p_k·(1 + (s_k - S)/γ): three passes over the (N, K, C) tensor in the
    backward pass instead of the seven that autograd spends on softmax, product and sum."""

    @staticmethod
    def forward(ctx, sim, gamma):
        weights = F.softmax(sim / gamma, dim=1)
        relaxed = torch.sum(weights * sim, dim=1)
        ctx.save_for_backward(sim, weights, relaxed)
        ctx.gamma = gamma
        return relaxed

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        sim, weights, relaxed = ctx.saved_tensors
        # (s - S)/γ + 1 in one pass, then times p and the incoming gradient.
        grad_sim = torch.add((1 - relaxed / ctx.gamma).unsqueeze(1), sim, alpha=1 / ctx.gamma)
        return grad_sim.mul_(weights).mul_(grad.unsqueeze(1)), None
