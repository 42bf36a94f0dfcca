"""CascadedEmbeddings (Hard-Aware Deeply Cascaded Embedding, Yuan et al., ICCV 2017, generalized):
the embedder's output is the concatenation of several embeddings, `embedding_sizes` wide; each
section i gets its own metric loss "metric_loss_i", optional miner "tuple_miner_i", optional
classifier "classifier_i" with loss "classifier_loss_i"."""

from ..utils.key_checker import KeyChecker
from .base_trainer import BaseTrainer


class CascadedEmbeddings(BaseTrainer):
    def __init__(self, embedding_sizes, *args, **kwargs):
        self.embedding_sizes = embedding_sizes
        super().__init__(*args, **kwargs)

    def calculate_loss(self, curr_batch):
        data, labels = curr_batch
        embeddings = self.compute_embeddings(data)
        indices_tuple, start = None, 0
        for i, size in enumerate(self.embedding_sizes):
            section = embeddings[:, start : start + size]
            start += size
            indices_tuple = self.maybe_mine_embeddings(
                section, labels, indices_tuple, f"tuple_miner_{i}"
            )
            if f"metric_loss_{i}" in self.losses:
                self.losses[f"metric_loss_{i}"] = self.maybe_get_metric_loss(
                    section, labels, indices_tuple, f"metric_loss_{i}"
                )
            if f"classifier_loss_{i}" in self.losses:
                logits = self.maybe_get_logits(section, f"classifier_{i}")
                self.losses[f"classifier_loss_{i}"] = self.maybe_get_classifier_loss(
                    logits, labels, f"classifier_loss_{i}"
                )

    def maybe_mine_embeddings(self, embeddings, labels, prev_indices_tuple, curr_miner_name):
        """The cascade: a miner that can mine from an external pool (HDCMiner's
        set_idx_externally) mines among the previous section's tuples, as in the paper."""
        miner = self.mining_funcs.get(curr_miner_name)
        if miner is None:
            return None
        if prev_indices_tuple is None or not hasattr(miner, "set_idx_externally"):
            return miner(embeddings, labels)
        miner.set_idx_externally(prev_indices_tuple, labels)
        indices_tuple = miner(embeddings, labels)
        miner.reset_idx()
        return indices_tuple

    def maybe_get_metric_loss(self, embeddings, labels, indices_tuple, curr_loss_name):
        if self.loss_weights.get(curr_loss_name, 0) > 0:
            return self.loss_funcs[curr_loss_name](embeddings, labels, indices_tuple)
        return 0

    def maybe_get_logits(self, embeddings, curr_classifier_name):
        if curr_classifier_name in self.models:
            return self.models[curr_classifier_name](embeddings)
        return None

    def maybe_get_classifier_loss(self, logits, labels, curr_loss_name):
        if logits is None or self.loss_weights.get(curr_loss_name, 0) <= 0:
            return 0
        return self.loss_funcs[curr_loss_name](logits, labels.to(logits.device))

    def modify_schema(self):
        self.schema.children["models"] = KeyChecker(
            ["trunk", "embedder", "classifier_[0-9]+"], essential=["trunk"]
        )
        self.schema.children["loss_funcs"] = KeyChecker(
            ["metric_loss_[0-9]+", "classifier_loss_[0-9]+"]
        )
        self.schema.children["mining_funcs"] = KeyChecker(
            ["tuple_miner_[0-9]+", "subset_batch_miner"], warn_empty=False, important=[]
        )
