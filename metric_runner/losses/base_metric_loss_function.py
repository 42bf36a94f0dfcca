from ..utils import common_functions as c_f
from ..utils.module_with_records import ModuleWithRecordsReducerAndDistance
from .mixins import EmbeddingRegularizerMixin


class BaseMetricLossFunction(EmbeddingRegularizerMixin, ModuleWithRecordsReducerAndDistance):
    """loss_fn(embeddings, labels, indices_tuple, ref_emb, ref_labels) -> scalar.

    Subclasses implement `compute_loss`, which returns a dict of named sub-losses; the reducer
    turns it into the scalar and the optional embedding regularizer adds its own sub-loss.
    """

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        raise NotImplementedError(f"{type(self).__name__} must define compute_loss")

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        self.reset_stats()
        c_f.check_shapes(embeddings, labels)
        if labels is not None:
            labels = c_f.to_device(labels, embeddings)
        ref_emb, ref_labels = c_f.set_ref_emb(embeddings, labels, ref_emb, ref_labels)
        if indices_tuple is not None:
            indices_tuple = c_f.to_device(indices_tuple, embeddings)
        self.check_labels_available(labels, indices_tuple)
        loss_dict = self.compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        self.add_embedding_regularization_to_loss_dict(loss_dict, embeddings)
        return self.reducer(loss_dict, embeddings, labels)

    def check_labels_available(self, labels, indices_tuple):
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)

    def zero_loss(self):
        return {"losses": 0, "indices": None, "reduction_type": "already_reduced"}

    def zero_losses(self):
        return {name: self.zero_loss() for name in self.sub_loss_names()}

    def _sub_loss_names(self):
        return ["loss"]

    def sub_loss_names(self):
        return self._sub_loss_names() + self.regularization_loss_names()

    def all_regularization_loss_names(self):
        """The names of the regularizers' sub-losses (PML's method)."""
        return self.regularization_loss_names()
