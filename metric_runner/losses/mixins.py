"""Regularization mixins: a loss gains an `embedding_reg_loss` or `weight_reg_loss` sub-loss.

Each mixin records a boolean placeholder before nn.Module.__init__ runs, because the reducer
(built inside the base initializer) must already know every sub-loss name.
"""

import torch

from ..utils import common_functions as c_f


class EmbeddingRegularizerMixin:
    def __init__(self, embedding_regularizer=None, embedding_reg_weight=1, **kwargs):
        self.embedding_regularizer = embedding_regularizer is not None
        super().__init__(**kwargs)
        self.embedding_regularizer = embedding_regularizer
        self.embedding_reg_weight = embedding_reg_weight
        if embedding_regularizer is not None:
            self.add_to_recordable_attributes(name="embedding_reg_weight", is_stat=False)

    def embedding_regularization_loss(self, embeddings):
        """The regularizer's sub-loss entry (losses 0 without a regularizer), PML's method."""
        losses = 0
        if self.embedding_regularizer is not None:
            losses = self.embedding_regularizer(embeddings) * self.embedding_reg_weight
        return {"losses": losses, "indices": None, "reduction_type": "already_reduced"}

    def add_embedding_regularization_to_loss_dict(self, loss_dict, embeddings):
        if self.embedding_regularizer is not None:
            loss_dict["embedding_reg_loss"] = self.embedding_regularization_loss(embeddings)

    def regularization_loss_names(self):
        return ["embedding_reg_loss"] if self.embedding_regularizer not in (None, False) else []


class WeightMixin:
    """For losses with learnable class weights / proxies (ArcFace, ProxyAnchor, ...).

    Gives the loss `weight_init_func` (each loss names its paper's default through
    `get_default_weight_init_func`) and the input checks every such loss shares: labels are
    required, `ref_emb` is meaningless (the weights are the reference set), and each label
    must index one of the `num_classes` weights.
    """

    def __init__(self, weight_init_func=None, **kwargs):
        super().__init__(**kwargs)
        self.weight_init_func = (
            self.get_default_weight_init_func() if weight_init_func is None else weight_init_func
        )

    def set_sizes(self, num_classes, embedding_size):
        self.check_positive_int("num_classes", num_classes)
        self.check_positive_int("embedding_size", embedding_size)
        self.num_classes = num_classes
        self.embedding_size = embedding_size

    def check_positive_int(self, name, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"{type(self).__name__} needs {name} as a positive int, got {value!r}."
            )

    def get_default_weight_init_func(self):
        return torch.nn.init.normal_

    def init_weight(self, weight):
        self.weight_init_func(weight)

    def new_weight(self, *shape):
        """A learnable weight of `shape`, initialized by `weight_init_func`."""
        weight = torch.nn.Parameter(torch.empty(*shape))
        self.init_weight(weight)
        return weight

    def cast_weight_like(self, weight, embeddings):
        """The weight in the embeddings' dtype and device, as a differentiable copy: the
        parameter itself keeps its dtype (e.g. float32 master weights under float16 inputs)."""
        return c_f.to_device(weight, embeddings, dtype=embeddings.dtype)

    def check_labels_available(self, labels, indices_tuple):
        if labels is None:
            raise ValueError(
                f"{type(self).__name__} needs labels: it learns one weight per class, so pass "
                "loss_fn(embeddings, labels)."
            )

    def checked_labels(self, embeddings, labels, ref_emb):
        """The labels as int64 class indices, after the checks every such loss shares. The
        label range is checked only on CPU, where it costs no device synchronisation (on CUDA
        an out-of-range label fails inside the kernel)."""
        if ref_emb is not embeddings:
            raise ValueError(
                f"{type(self).__name__} compares embeddings with its learned class weights, "
                "so ref_emb/ref_labels are not supported: call loss_fn(embeddings, labels)."
            )
        if embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"{type(self).__name__} was built with embedding_size={self.embedding_size} "
                f"but got embeddings of size {embeddings.shape[1]}; build it with "
                f"embedding_size={embeddings.shape[1]}."
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(
                f"{type(self).__name__} needs integer class indices as labels, got {labels.dtype}."
            )
        if labels.device.type == "cpu" and len(labels) > 0:
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"{type(self).__name__} has num_classes={self.num_classes}, so labels must "
                    f"lie in [0, {self.num_classes - 1}], got labels in [{low}, {high}]; "
                    "remap the labels to 0..num_classes-1 or raise num_classes."
                )
        return labels.long()


class WeightRegularizerMixin(WeightMixin):
    """A WeightMixin loss with an optional `weight_regularizer` sub-loss on its weights."""

    def __init__(self, weight_regularizer=None, weight_reg_weight=1, **kwargs):
        self.weight_regularizer = weight_regularizer is not None
        super().__init__(**kwargs)
        self.weight_regularizer = weight_regularizer
        self.weight_reg_weight = weight_reg_weight
        if weight_regularizer is not None:
            self.add_to_recordable_attributes(name="weight_reg_weight", is_stat=False)

    def weight_regularization_loss(self, weights):
        """The regularizer's sub-loss entry (losses 0 without a regularizer), PML's method."""
        losses = 0
        if self.weight_regularizer is not None:
            losses = self.weight_regularizer(weights) * self.weight_reg_weight
        return {"losses": losses, "indices": None, "reduction_type": "already_reduced"}

    def add_weight_regularization_to_loss_dict(self, loss_dict, weights):
        if self.weight_regularizer is not None:
            loss_dict["weight_reg_loss"] = self.weight_regularization_loss(weights)

    def regularization_loss_names(self):
        names = super().regularization_loss_names()
        if self.weight_regularizer not in (None, False):
            names = names + ["weight_reg_loss"]
        return names
