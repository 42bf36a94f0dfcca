import torch

from ..utils import common_functions as c_f
from .base_tester import set_to_eval
from .global_embedding_space import GlobalEmbeddingSpaceTester


class GlobalTwoStreamEmbeddingSpaceTester(GlobalEmbeddingSpaceTester):
    """For two-stream data (TwoStreamMetricLoss): the dataset yields (anchor, positive, label);
    anchors are the queries and the positives of the same split are the reference."""

    @staticmethod
    def default_data_and_label_getter(batch):
        return batch[0], batch[1], batch[2]

    def check_splits_to_eval(self, dataset_dict, splits_to_eval):
        splits_to_eval = super().check_splits_to_eval(dataset_dict, splits_to_eval)
        if any(references != [query] for query, references in splits_to_eval):
            raise ValueError(
                "GlobalTwoStreamEmbeddingSpaceTester evaluates each split's anchors against its own "
                "positives: splits_to_eval entries must look like (split, [split])."
            )
        return splits_to_eval

    def get_embeddings_and_labels(self, dataset, trunk_model, embedder_model, collate_fn):
        anchors, positives, labels = self.get_all_embeddings(
            dataset, trunk_model, embedder_model, collate_fn
        )
        return anchors, labels, positives

    def get_all_embeddings(
        self,
        dataset,
        trunk_model,
        embedder_model=None,
        collate_fn=None,
        eval=True,
        return_as_numpy=False,
    ):
        """(anchor embeddings, positive embeddings, labels (N, num_levels)) of a whole dataset.
        With `eval`, the models are left in eval mode."""
        if eval:
            set_to_eval(trunk_model, embedder_model)
        anchors, positives, labels = self.compute_all_embeddings(
            self.dataloader(dataset, collate_fn), trunk_model, embedder_model
        )
        # One projection for both streams, so anchors and positives stay in the same space.
        both = self.postprocess(torch.cat([anchors, positives]))
        anchors, positives = both[: len(anchors)], both[len(anchors) :]
        if return_as_numpy:
            return c_f.to_numpy(anchors), c_f.to_numpy(positives), c_f.to_numpy(labels)
        return anchors, positives, labels

    def compute_all_embeddings(self, dataloader, trunk_model, embedder_model):
        """(raw anchor embeddings, raw positive embeddings, labels (N, num_levels)), without
        gradients and without changing the models' modes."""
        embedder_model = torch.nn.Identity() if embedder_model is None else embedder_model
        anchors, positives, labels = [], [], []
        with torch.no_grad():
            for batch in dataloader:
                anchor_data, positive_data, batch_labels = self.data_and_label_getter(batch)
                for stream, data in ((anchors, anchor_data), (positives, positive_data)):
                    stream.append(self.get_embeddings_for_eval(trunk_model, embedder_model, data))
                labels.append(self.process_labels(batch_labels))
        return torch.cat(anchors), torch.cat(positives), torch.cat(labels)

    def set_reference_and_query(
        self, embeddings_and_labels, query_split_name, reference_split_names
    ):
        anchors, labels, positives = embeddings_and_labels[query_split_name]
        return anchors, labels, positives, labels

    def ref_includes_query(self, query_split_name, reference_split_names):
        return False
