"""The runner's tester: GlobalEmbeddingSpaceTester with retrieval defaults, plain metric names,
per-class rows and scatter plots, so `metric-run` evaluates through the library's path."""

import torch

from ..utils.accuracy_calculator import AccuracyCalculator
from .global_embedding_space import GlobalEmbeddingSpaceTester
from .scatter_plot import ScatterPlotHook, default_visualizer

DEFAULT_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


class KNNTester(GlobalEmbeddingSpaceTester):
    """Retrieval accuracy of each split against itself, as PML's testers measure it.

    Every sample of a split is embedded (L2-normalized when `normalize_embeddings`), then each
    one queries the rest of its split: AccuracyCalculator's k-NN search with the query itself
    excluded, `k` neighbours, and the `include`d metrics. `return_per_class` adds each metric
    per class (from the same search); `visualize` saves a 2-D scatter plot of each split (UMAP
    when umap-learn is installed, else PCA) when the caller gives a folder for it. A split
    whose dataset has `is_query` (In-Shop's test split) is evaluated queries against gallery.
    `data_and_label_getter` (a batch -> (inputs, labels)) and evaluate's `collate_fn` are
    BaseTester's, e.g. the runner's batch decoder (metric_runner.datasets.batch_decode).
    """

    def __init__(
        self,
        include=DEFAULT_METRICS,
        k="max_bin_count",
        normalize_embeddings=True,
        batch_size=256,
        return_per_class=False,
        visualize=False,
        data_device=None,
        dataloader_num_workers=0,
        data_and_label_getter=None,
    ):
        super().__init__(
            normalize_embeddings=normalize_embeddings,
            batch_size=batch_size,
            dataloader_num_workers=dataloader_num_workers,
            data_device=data_device,
            data_and_label_getter=data_and_label_getter,
            accuracy_calculator=AccuracyCalculator(
                include=tuple(include), k=k, return_per_class=return_per_class
            ),
        )
        self.include = tuple(include)
        self.return_per_class = return_per_class
        self.visualize = visualize

    def include_order(self, metric):
        """Metrics in the order `include` lists them (tables and logs follow the config)."""
        return self.include.index(metric) if metric in self.include else len(self.include)

    def evaluate(
        self, splits, epoch, trunk_model, embedder_model=None, plot_dir=None, collate_fn=None
    ):
        """(accuracies, per_class): accuracies {split: {metric: value}}; per_class, with
        return_per_class, {split: {class: {"queries": count, metric: value}}} for every class
        with at least two samples (a lone sample has nothing to retrieve), else None. With
        `visualize`, a scatter plot per split goes to `plot_dir` (if given) as
        `<split>_<visualizer>_epoch<epoch>.png`."""
        plotting = self.visualize and plot_dir is not None
        self.visualizer = default_visualizer() if plotting else None
        self.original_visualizer_hook = PlotNamedByVisualizer(plot_dir) if plotting else None
        self.per_class = {}
        self.query_masks = {
            name: dataset.is_query
            for name, dataset in splits.items()
            if getattr(dataset, "is_query", None) is not None
        }
        results = self.test(splits, epoch, trunk_model, embedder_model, collate_fn=collate_fn)
        suffix = self.accuracies_keyname("", 0)
        accuracies = {}
        for split, metrics in results.items():
            named = {k[: -len(suffix)]: float(v) for k, v in metrics.items() if k.endswith(suffix)}
            accuracies[split] = {m: named[m] for m in sorted(named, key=self.include_order)}
        return accuracies, (self.per_class if self.return_per_class else None)

    def do_knn_and_accuracies(
        self, accuracies, embeddings_and_labels, query_split_name, reference_split_names
    ):
        mask = getattr(self, "query_masks", {}).get(query_split_name)
        if mask is None:
            super().do_knn_and_accuracies(
                accuracies, embeddings_and_labels, query_split_name, reference_split_names
            )
        else:
            self.queries_against_gallery(accuracies, embeddings_and_labels[query_split_name], mask)
        if self.return_per_class:
            labels = embeddings_and_labels[query_split_name][1][:, 0]
            suffix = self.accuracies_keyname("", 0)
            scores = {
                key[: -len(suffix)]: accuracies.pop(key)
                for key in list(accuracies)
                if key.endswith(suffix)
            }
            scores = {m: scores[m] for m in sorted(scores, key=self.include_order)}
            overall, self.per_class[query_split_name] = overall_and_per_class(scores, labels)
            accuracies.update({self.accuracies_keyname(m, 0): v for m, v in overall.items()})

    def queries_against_gallery(self, accuracies, embeddings_and_labels, is_query):
        """A split of queries and a gallery (In-Shop's test split, `dataset.is_query`): each
        query searches the gallery only."""
        embeddings, labels = embeddings_and_labels[:2]
        is_query = torch.as_tensor(is_query, dtype=torch.bool)
        level = self.label_levels_to_evaluate(labels)[0]
        scores = self.accuracy_calculator.get_accuracy(
            embeddings[is_query],
            labels[is_query, level],
            embeddings[~is_query],
            labels[~is_query, level],
            ref_includes_query=False,
        )
        self.add_accuracies(accuracies, {0: scores})


class PlotNamedByVisualizer(ScatterPlotHook):
    """One label level only, so the files are named `<split>_<visualizer>_epoch<epoch>.png`."""

    def __call__(self, visualizer, embeddings, labels, split_name, keyname, epoch):
        return super().__call__(
            visualizer, embeddings, labels, split_name, type(visualizer).__name__, epoch
        )


def overall_and_per_class(scores, labels):
    """Split AccuracyCalculator(return_per_class=True) results into the overall value of each
    metric and a row per class. The calculator lists per-class means in ascending label order
    over the classes that are not lone; the overall mean over queries is their mean weighted
    by each class's number of queries. Metrics that are not per class (NMI, AMI) are overall."""
    classes, counts = torch.unique(labels, return_counts=True)
    kept = counts > 1
    classes, counts = classes[kept].tolist(), counts[kept].to(torch.float64)
    rows = {str(label): {"queries": int(count)} for label, count in zip(classes, counts)}
    overall = {}
    for metric, value in scores.items():
        if not isinstance(value, list):
            overall[metric] = float(value)
            continue
        per_class = torch.tensor(value, dtype=torch.float64)
        overall[metric] = float((per_class * counts).sum() / counts.sum())
        for label, class_value in zip(classes, value):
            rows[str(label)][metric] = float(class_value)
    return overall, rows
