"""MetricLossOnly: a metric loss (and optional miners) on the embedder's output."""

from .base_trainer import BaseTrainer


class MetricLossOnly(BaseTrainer):
    """models: {"trunk", optional "embedder"}; loss_funcs: {"metric_loss"}; mining_funcs:
    optional "subset_batch_miner" and "tuple_miner"."""

    def calculate_loss(self, curr_batch):
        data, labels = curr_batch
        embeddings = self.compute_embeddings(data)
        indices_tuple = self.maybe_mine_embeddings(embeddings, labels)
        if "metric_loss" in self.loss_funcs:  # absent in a run trained by extra terms alone
            self.losses["metric_loss"] = self.maybe_get_metric_loss(
                embeddings, labels, indices_tuple
            )
        self.add_extra_loss_terms(data, embeddings)

    def maybe_get_metric_loss(self, embeddings, labels, indices_tuple):
        """A loss whose weight is 0 is not computed at all."""
        if self.loss_weights.get("metric_loss", 0) > 0:
            return self.loss_funcs["metric_loss"](embeddings, labels, indices_tuple)
        return 0
