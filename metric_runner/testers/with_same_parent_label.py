import numpy as np

from .base_tester import BaseTester


class WithSameParentLabelTester(BaseTester):
    """For labels with a hierarchy: a query at level L searches only the references that share
    its level L+1 (parent) label. Each metric is the unweighted mean over parent labels."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.accuracy_calculator.return_per_class:
            raise ValueError(
                "WithSameParentLabelTester averages over parent labels, so it cannot return per-class "
                "lists: use an AccuracyCalculator with return_per_class=False."
            )

    def label_levels_to_evaluate(self, query_labels):
        num_levels = query_labels.shape[1]
        levels = (
            list(range(num_levels - 1))
            if self.label_hierarchy_level == "all"
            else [self.label_hierarchy_level]
        )
        if not levels or levels[-1] >= num_levels - 1:
            raise ValueError(
                f"WithSameParentLabelTester needs a parent level above label_hierarchy_level="
                f"{self.label_hierarchy_level}, but the labels have {num_levels} level(s)."
            )
        return levels

    def do_knn_and_accuracies(
        self, accuracies, embeddings_and_labels, query_split_name, reference_split_names
    ):
        query, query_labels, reference, reference_labels = self.set_reference_and_query(
            embeddings_and_labels, query_split_name, reference_split_names
        )
        ref_includes_query = self.ref_includes_query(query_split_name, reference_split_names)
        level_accuracies = {}
        for level in self.label_levels_to_evaluate(query_labels):
            per_parent = []
            for parent in query_labels[:, level + 1].unique():
                query_mask = query_labels[:, level + 1] == parent
                reference_mask = reference_labels[:, level + 1] == parent
                per_parent.append(
                    self.accuracy_calculator.get_accuracy(
                        query[query_mask],
                        query_labels[query_mask, level],
                        reference[reference_mask],
                        reference_labels[reference_mask, level],
                        ref_includes_query,
                    )
                )
            level_accuracies[level] = {
                metric: float(np.mean([accuracy[metric] for accuracy in per_parent]))
                for metric in per_parent[0]
            }
        self.add_accuracies(accuracies, level_accuracies)
