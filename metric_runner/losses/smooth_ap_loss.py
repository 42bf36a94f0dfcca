import torch
from torch.utils.checkpoint import checkpoint

from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction

# Largest (positive pair × batch) block of sigmoids held at once; bigger batches are chunked.
MAX_CHUNK_ELEMENTS = 2**24


class SmoothAPLoss(BaseMetricLossFunction):
    """Smooth-AP (Brown et al., "Smooth-AP: Smoothing the Path Towards Large-Scale Image
    Retrieval", ECCV 2020).

    For query q with positive set P (q included, as in the authors' code) and cosine
    similarities s: AP_q ≈ 1/|P| Σ_{i∈P} (1 + Σ_{j∈P, j≠i} G(s_j − s_i)) / (1 + Σ_{j≠i} G(s_j − s_i)),
    with G(x) = sigmoid(x / temperature); the loss is 1 − AP_q.
    """

    def __init__(self, temperature=0.01, **kwargs):
        super().__init__(**kwargs)
        c_f.assert_distance_type(self, CosineSimilarity)
        self.temperature = temperature
        self.add_to_recordable_attributes(name="temperature", is_stat=False)

    def check_labels_available(self, labels, indices_tuple):
        if labels is None:
            raise ValueError(
                "SmoothAPLoss needs labels: each query's positive set comes from the labels."
            )

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if ref_emb is not embeddings:
            raise ValueError(
                "SmoothAPLoss does not support ref_emb: it ranks the batch against itself."
            )
        miner_weights = lmu.convert_to_weights(indices_tuple, labels, dtype=embeddings.dtype)
        pos_mask = labels.unsqueeze(1) == labels.unsqueeze(0)
        num_pos = pos_mask.sum(dim=1)
        # A query alone in its class has AP = 1 by construction: no loss term.
        (query_idx,) = torch.where(num_pos > 1)
        if len(query_idx) == 0:
            return self.zero_losses()
        sims = self.distance(embeddings)
        pair_query, pair_positive = torch.where(pos_mask)
        ratios = self.rank_ratios(sims, pos_mask, pair_query, pair_positive)
        ap = torch.zeros_like(sims[:, 0]).index_add(0, pair_query, ratios) / num_pos
        losses = (1 - ap) * miner_weights
        return {
            "ap_loss": {
                "losses": losses[query_idx],
                "indices": query_idx,
                "reduction_type": "element",
            }
        }

    def rank_ratios(self, sims, pos_mask, pair_query, pair_positive):
        """rank among positives / rank among all, for every (query, positive) pair, computed in
        chunks of pairs; with several chunks each is recomputed in backward (checkpointing) so
        memory stays one chunk, not (pairs × batch)."""
        chunk_size = max(1, MAX_CHUNK_ELEMENTS // sims.shape[1])
        chunked = len(pair_query) > chunk_size and torch.is_grad_enabled()
        ratios = []
        for start in range(0, len(pair_query), chunk_size):
            args = (
                sims,
                pos_mask,
                pair_query[start : start + chunk_size],
                pair_positive[start : start + chunk_size],
            )
            ratios.append(
                checkpoint(self.chunk_rank_ratios, *args, use_reentrant=False)
                if chunked
                else self.chunk_rank_ratios(*args)
            )
        return torch.cat(ratios)

    def chunk_rank_ratios(self, sims, pos_mask, pair_query, pair_positive):
        query_sims = sims[pair_query]
        positive_sims = query_sims.gather(1, pair_positive.unsqueeze(1))
        ranked_above = torch.sigmoid((query_sims - positive_sims) / self.temperature)
        # j = i is not compared with itself.
        ranked_above = ranked_above.scatter(1, pair_positive.unsqueeze(1), 0)
        rank_all = 1 + ranked_above.sum(dim=1)
        rank_pos = 1 + torch.sum(ranked_above * pos_mask[pair_query], dim=1)
        return rank_pos / rank_all

    def _sub_loss_names(self):
        return ["ap_loss"]

    def get_default_distance(self):
        return CosineSimilarity()
