"""TwoStreamMetricLoss: the dataset yields (anchor, positive, label); triplets take their anchor
from the anchor stream and their positive and negative from the other stream."""

import torch

from ..utils import loss_and_miner_utils as lmu
from ..utils.key_checker import KeyChecker
from .base_trainer import BaseTrainer


class TwoStreamMetricLoss(BaseTrainer):
    """models: {"trunk", optional "embedder"}; loss_funcs: {"metric_loss"}; mining_funcs: only
    "tuple_miner", called as miner(anchor_embeddings, labels, other_embeddings, labels). Without a
    miner, every (anchor, same-label other, different-label other) triplet is used."""

    def calculate_loss(self, curr_batch):
        anchors, others, labels = curr_batch
        anchor_embeddings = self.compute_embeddings(anchors)
        other_embeddings = self.compute_embeddings(others)
        indices_tuple = self.maybe_mine_embeddings(anchor_embeddings, labels, other_embeddings)
        self.losses["metric_loss"] = self.maybe_get_metric_loss(
            anchor_embeddings, other_embeddings, labels, indices_tuple
        )

    def get_batch(self):
        anchors, others, labels = self.data_and_label_getter(self.next_batch())
        return anchors, others, self.to_data_device(self.process_labels(labels))

    def maybe_mine_embeddings(self, anchor_embeddings, labels, other_embeddings):
        """The other stream is another set (a copy of the labels, not the same object), so an
        anchor's own positive counts as a positive pair."""
        other_labels = labels.clone()
        if "tuple_miner" in self.mining_funcs:
            return self.mining_funcs["tuple_miner"](
                anchor_embeddings, labels, other_embeddings, other_labels
            )
        return lmu.get_all_triplets_indices(labels, other_labels)

    def maybe_get_metric_loss(self, anchor_embeddings, other_embeddings, labels, indices_tuple):
        """One embedding matrix [anchors; others]: the tuple's positive and negative indices
        (into the other stream) shift by the batch size."""
        if self.loss_weights.get("metric_loss", 0) <= 0:
            return 0
        anchor_idx, positive_idx, negative_idx = indices_tuple
        shift = len(anchor_embeddings)
        return self.loss_funcs["metric_loss"](
            torch.cat([anchor_embeddings, other_embeddings]),
            torch.cat([labels, labels]),
            (anchor_idx, positive_idx + shift, negative_idx + shift),
        )

    def modify_schema(self):
        self.schema.children["mining_funcs"] = KeyChecker(
            ["tuple_miner"], warn_empty=False, important=[]
        )
