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
    when umap-learn is installed, else PCA) when the caller gives a folder for it.

    A split whose dataset has `is_query` (In-Shop's test split, an OML CSV's) is evaluated
    queries against gallery: the `is_gallery` items, or without that mask every non-query. An
    item in both never retrieves itself. Every item in both is the ordinary evaluation; the
    queries may also all be outside the gallery (In-Shop) or all inside it (a gallery with
    extra distractors), but not some of each.
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
        return_per_class, {split: {class: {"queries": count, metric: value}}} for every query
        class with another item of its class to retrieve, else None. With
        `visualize`, a scatter plot per split goes to `plot_dir` (if given) as
        `<split>_<visualizer>_epoch<epoch>.png`."""
        plotting = self.visualize and plot_dir is not None
        self.visualizer = default_visualizer() if plotting else None
        self.original_visualizer_hook = PlotNamedByVisualizer(plot_dir) if plotting else None
        self.per_class = {}
        # Checked before anything is embedded, so a bad query/gallery split fails at once.
        self.retrieval_rows = {
            name: query_and_reference_rows(
                dataset.is_query, getattr(dataset, "is_gallery", None), name
            )
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
        rows = getattr(self, "retrieval_rows", {}).get(query_split_name)
        if rows is None:
            super().do_knn_and_accuracies(
                accuracies, embeddings_and_labels, query_split_name, reference_split_names
            )
        else:
            self.queries_against_gallery(accuracies, embeddings_and_labels[query_split_name], rows)
        if self.return_per_class:
            query_labels, reference_labels, ref_includes_query = self.retrieval_labels(
                embeddings_and_labels, query_split_name, reference_split_names, rows
            )
            suffix = self.accuracies_keyname("", 0)
            scores = {
                key[: -len(suffix)]: accuracies.pop(key)
                for key in list(accuracies)
                if key.endswith(suffix)
            }
            scores = {m: scores[m] for m in sorted(scores, key=self.include_order)}
            overall, self.per_class[query_split_name] = overall_and_per_class(
                scores, query_labels[:, 0], reference_labels[:, 0], ref_includes_query
            )
            accuracies.update({self.accuracies_keyname(m, 0): v for m, v in overall.items()})

    def retrieval_labels(
        self, embeddings_and_labels, query_split_name, reference_split_names, rows
    ):
        """(query labels, reference labels, ref_includes_query) of the search just made."""
        if rows is None:
            _, query_labels, _, reference_labels = self.set_reference_and_query(
                embeddings_and_labels, query_split_name, reference_split_names
            )
            return (
                query_labels,
                reference_labels,
                self.ref_includes_query(query_split_name, reference_split_names),
            )
        labels = embeddings_and_labels[query_split_name][1]
        query_rows, reference_rows, ref_includes_query = rows
        return labels[query_rows], labels[reference_rows], ref_includes_query

    def queries_against_gallery(self, accuracies, embeddings_and_labels, rows):
        """A split of queries and a gallery: each query searches the gallery only. `rows`:
        query_and_reference_rows' (query rows, reference rows, ref_includes_query)."""
        embeddings, labels = embeddings_and_labels[:2]
        query_rows, reference_rows, ref_includes_query = rows
        level = self.label_levels_to_evaluate(labels)[0]
        scores = self.accuracy_calculator.get_accuracy(
            embeddings[query_rows],
            labels[query_rows, level],
            embeddings[reference_rows],
            labels[reference_rows, level],
            ref_includes_query=ref_includes_query,
        )
        self.add_accuracies(accuracies, {0: scores})


def query_and_reference_rows(is_query, is_gallery, split):
    """(query rows, reference rows, ref_includes_query) of a split with query / gallery masks
    (no is_gallery: the gallery is every non-query), or None when every item is both (the
    ordinary evaluation of the split against itself). Queries that are gallery items lead the
    reference rows, so the calculator drops each one's own row by its index."""
    is_query = torch.as_tensor(is_query, dtype=torch.bool)
    is_gallery = ~is_query if is_gallery is None else torch.as_tensor(is_gallery, dtype=torch.bool)
    if is_query.all() and is_gallery.all():
        return None
    if not (is_query.any() and is_gallery.any()):
        raise ValueError(
            f"split {split!r} has {int(is_query.sum())} queries and {int(is_gallery.sum())} "
            "gallery items; evaluating it needs at least one of each (is_query / is_gallery)"
        )
    in_gallery = int((is_query & is_gallery).sum())
    not_in_gallery = int((is_query & ~is_gallery).sum())
    if in_gallery and not_in_gallery:
        raise ValueError(
            f"split {split!r}: {in_gallery} rows are queries in the gallery (is_query and "
            f"is_gallery true) and {not_in_gallery} rows are queries outside it (is_query true, "
            "is_gallery false); make every query a gallery item (is_gallery true on all "
            "is_query rows: each retrieves from the rest) or none (is_gallery false on them: "
            "queries against a separate gallery)"
        )
    queries = rows_of(is_query)
    if not_in_gallery:
        return queries, rows_of(is_gallery), False
    return queries, torch.cat([queries, rows_of(is_gallery & ~is_query)]), True


class PlotNamedByVisualizer(ScatterPlotHook):
    """One label level only, so the files are named `<split>_<visualizer>_epoch<epoch>.png`."""

    def __call__(self, visualizer, embeddings, labels, split_name, keyname, epoch):
        return super().__call__(
            visualizer, embeddings, labels, split_name, type(visualizer).__name__, epoch
        )


def rows_of(mask):
    return torch.nonzero(mask).squeeze(1)


def overall_and_per_class(scores, query_labels, reference_labels, ref_includes_query):
    """Split AccuracyCalculator(return_per_class=True) results into the overall value of each
    metric and a row per class. The calculator lists per-class means in ascending label order
    over the query classes that are not lone (some reference row besides the query itself has
    their label); the overall mean over queries is their mean weighted by each class's number
    of queries. Metrics that are not per class (NMI, AMI) are overall."""
    classes, counts = torch.unique(query_labels, return_counts=True)
    reference_classes, reference_counts = torch.unique(reference_labels, return_counts=True)
    position = torch.searchsorted(reference_classes, classes).clamp(max=len(reference_classes) - 1)
    found = reference_classes[position] == classes
    in_reference = torch.where(found, reference_counts[position], 0)
    kept = in_reference - int(ref_includes_query) > 0
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
