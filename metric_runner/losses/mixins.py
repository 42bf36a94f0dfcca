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

    def add_embedding_regularization_to_loss_dict(self, loss_dict, embeddings):
        if self.embedding_regularizer is not None:
            loss_dict["embedding_reg_loss"] = {
                "losses": self.embedding_regularizer(embeddings) * self.embedding_reg_weight,
                "indices": None,
                "reduction_type": "already_reduced",
            }

    def regularization_loss_names(self):
        return ["embedding_reg_loss"] if self.embedding_regularizer not in (None, False) else []


class WeightRegularizerMixin:
    """For losses with learnable class weights / proxies (ArcFace, ProxyAnchor, ...)."""

    def __init__(self, weight_init_func=None, weight_regularizer=None, weight_reg_weight=1, **kwargs):
        self.weight_regularizer = weight_regularizer is not None
        super().__init__(**kwargs)
        self.weight_regularizer = weight_regularizer
        self.weight_reg_weight = weight_reg_weight
        self.weight_init_func = torch.nn.init.normal_ if weight_init_func is None else weight_init_func
        if weight_regularizer is not None:
            self.add_to_recordable_attributes(name="weight_reg_weight", is_stat=False)

    def init_weight(self, weight):
        self.weight_init_func(weight)

    def add_weight_regularization_to_loss_dict(self, loss_dict, weights):
        if self.weight_regularizer is not None:
            loss_dict["weight_reg_loss"] = {
                "losses": self.weight_regularizer(weights) * self.weight_reg_weight,
                "indices": None,
                "reduction_type": "already_reduced",
            }

    def regularization_loss_names(self):
        names = super().regularization_loss_names()
        if self.weight_regularizer not in (None, False):
            names = names + ["weight_reg_loss"]
        return names

    def cast_weight_like(self, weight, embeddings):
        return c_f.to_device(weight, embeddings, dtype=embeddings.dtype)
