from .base_tester import BaseTester


class GlobalEmbeddingSpaceTester(BaseTester):
    """Nearest neighbours are searched in the whole reference embedding space."""

    def do_knn_and_accuracies(
        self, accuracies, embeddings_and_labels, query_split_name, reference_split_names
    ):
        query, query_labels, reference, reference_labels = self.set_reference_and_query(
            embeddings_and_labels, query_split_name, reference_split_names
        )
        ref_includes_query = self.ref_includes_query(query_split_name, reference_split_names)
        level_accuracies = {
            level: self.accuracy_calculator.get_accuracy(
                query,
                query_labels[:, level],
                reference,
                reference_labels[:, level],
                ref_includes_query,
            )
            for level in self.label_levels_to_evaluate(query_labels)
        }
        self.add_accuracies(accuracies, level_accuracies)
