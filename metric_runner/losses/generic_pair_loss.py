import torch

from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class GenericPairLoss(BaseMetricLossFunction):
    """Base for losses defined on positive and negative pairs.

    With `mat_based_loss=True` the subclass receives the full distance matrix and boolean
    pos/neg masks (`_compute_loss(mat, pos_mask, neg_mask)`); otherwise it receives the
    distances of each pair (`_compute_loss(pos_pair_dist, neg_pair_dist, indices_tuple)`).
    Triplets from a miner are converted to pairs first.
    """

    def __init_subclass__(cls, **kwargs):
        # Checked when the class is defined, rather than failing on its first call.
        super().__init_subclass__(**kwargs)
        if not hasattr(cls, "_compute_loss") and cls.compute_loss is GenericPairLoss.compute_loss:
            raise TypeError(
                f"{cls.__name__} subclasses GenericPairLoss, so it must define "
                "_compute_loss(mat, pos_mask, neg_mask) (mat_based_loss=True) or "
                "_compute_loss(pos_pair_dist, neg_pair_dist, indices_tuple), or override "
                "compute_loss."
            )

    def __init__(self, mat_based_loss, **kwargs):
        super().__init__(**kwargs)
        self.mat_based_loss = mat_based_loss

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        # Self pairs (the diagonal) are excluded only when the batch is its own reference set.
        same_set = ref_emb is embeddings
        ref_labels = None if same_set else ref_labels
        if indices_tuple is None:
            # All pairs: masks straight from the labels, selected without index arithmetic.
            pos_mask, neg_mask = lmu.get_matches_and_diffs(labels, ref_labels)
            mat = self.distance(embeddings, None if same_set else ref_emb)
            if self.mat_based_loss:
                return self._compute_loss(mat, pos_mask, neg_mask)
            indices_tuple = (*torch.where(pos_mask), *torch.where(neg_mask))
            return self._compute_loss(
                mat.masked_select(pos_mask), mat.masked_select(neg_mask), indices_tuple
            )
        indices_tuple = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        if all(len(x) == 0 for x in indices_tuple):
            return self.zero_losses()
        mat = self.distance(embeddings, None if same_set else ref_emb)
        if self.mat_based_loss:
            pos_mask, neg_mask = lmu.pairs_to_masks(indices_tuple, mat.shape, mat.device)
            return self._compute_loss(mat, pos_mask, neg_mask)
        a1, p, a2, n = indices_tuple
        return self._compute_loss(
            lmu.values_at(mat, a1, p), lmu.values_at(mat, a2, n), indices_tuple
        )
