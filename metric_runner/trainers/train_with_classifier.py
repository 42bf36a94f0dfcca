"""TrainWithClassifier: trunk -> embedder -> classifier, a metric loss on the embeddings and a
classification loss on the classifier's logits."""

from ..utils.key_checker import KeyChecker
from .metric_loss_only import MetricLossOnly


class TrainWithClassifier(MetricLossOnly):
    """models: {"trunk", optional "embedder", "classifier"}; loss_funcs: {"metric_loss",
    "classifier_loss"}. A loss whose weight is 0 (or whose classifier is absent) is skipped."""

    def calculate_loss(self, curr_batch):
        data, labels = curr_batch
        embeddings = self.compute_embeddings(data)
        logits = self.maybe_get_logits(embeddings)
        indices_tuple = self.maybe_mine_embeddings(embeddings, labels)
        if "metric_loss" in self.loss_funcs:  # absent in a run trained by extra terms alone
            self.losses["metric_loss"] = self.maybe_get_metric_loss(
                embeddings, labels, indices_tuple
            )
        self.add_extra_loss_terms(data, embeddings)
        self.losses["classifier_loss"] = self.maybe_get_classifier_loss(logits, labels)

    def maybe_get_classifier_loss(self, logits, labels):
        if logits is None:
            return 0
        return self.loss_funcs["classifier_loss"](logits, labels.to(logits.device))

    def maybe_get_logits(self, embeddings):
        if "classifier" in self.models and self.loss_weights.get("classifier_loss", 0) > 0:
            return self.models["classifier"](embeddings)
        return None

    def modify_schema(self):
        self.schema.children["models"] = KeyChecker(
            ["trunk", "embedder", "classifier"], essential=["trunk"]
        )
        self.schema.children["loss_funcs"] = KeyChecker(["metric_loss", "classifier_loss"])
