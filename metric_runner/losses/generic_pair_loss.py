from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class GenericPairLoss(BaseMetricLossFunction):
    """Base for losses defined on positive and negative pairs.

    With `mat_based_loss=True` the subclass receives the full distance matrix and boolean
    pos/neg masks (`_compute_loss(mat, pos_mask, neg_mask)`); otherwise it receives the
    distances of each pair (`_compute_loss(pos_pair_dist, neg_pair_dist, indices_tuple)`).
    Triplets from a miner are converted to pairs first.
    """

    def __init__(self, mat_based_loss, **kwargs):
        super().__init__(**kwargs)
        self.mat_based_loss = mat_based_loss

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        indices_tuple = lmu.convert_to_pairs(indices_tuple, labels, None if same_set else ref_labels)
        if all(len(x) == 0 for x in indices_tuple):
            return self.zero_losses()
        mat = self.distance(embeddings, None if same_set else ref_emb)
        if self.mat_based_loss:
            pos_mask, neg_mask = lmu.pairs_to_masks(indices_tuple, mat.shape, mat.device)
            return self._compute_loss(mat, pos_mask, neg_mask)
        a1, p, a2, n = indices_tuple
        return self._compute_loss(mat[a1, p], mat[a2, n], indices_tuple)

    def _compute_loss(self, *args):
        raise NotImplementedError(f"{type(self).__name__} must define _compute_loss")
