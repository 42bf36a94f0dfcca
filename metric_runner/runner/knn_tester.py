import torch
from tqdm.auto import tqdm

from ..testers.scatter_plot import ScatterPlotHook, default_visualizer
from ..utils.accuracy_calculator import AccuracyCalculator
from .data import make_loader

DEFAULT_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


class KNNTester:
    """Retrieval accuracy of a model on each split, as PML's testers measure it.

    Every sample of a split is embedded (L2-normalized when `normalize_embeddings`), then each
    one queries the rest of its split: AccuracyCalculator's k-NN search with the query itself
    excluded, `k` neighbours, and the `include`d metrics. `return_per_class` adds each metric
    per class (from the same search); `visualize` saves a 2-D scatter plot of each split (UMAP
    when umap-learn is installed, else PCA) when the caller gives a folder for it.
    """

    def __init__(
        self,
        include=DEFAULT_METRICS,
        k="max_bin_count",
        normalize_embeddings=True,
        batch_size=256,
        return_per_class=False,
        visualize=False,
    ):
        self.accuracy_calculator = AccuracyCalculator(
            include=tuple(include), k=k, return_per_class=return_per_class
        )
        self.normalize_embeddings = normalize_embeddings
        self.batch_size = batch_size
        self.return_per_class = return_per_class
        self.visualize = visualize

    @torch.no_grad()
    def embed(self, model, dataset, device, description="embed"):
        was_training = model.training
        model.eval()
        embeddings, labels = [], []
        for inputs, batch_labels in tqdm(
            make_loader(dataset, self.batch_size),
            desc=description,
            leave=False,
            dynamic_ncols=True,
            disable=None,
        ):
            embeddings.append(model(inputs.to(device)).float())
            labels.append(batch_labels)
        model.train(was_training)
        embeddings = torch.cat(embeddings)
        if self.normalize_embeddings:
            embeddings = torch.nn.functional.normalize(embeddings, dim=1)
        return embeddings, torch.cat(labels).to(device)

    def test(self, model, splits, device):
        """{split name: {metric name: value}} for every dataset in `splits`."""
        return self.evaluate(model, splits, device)[0]

    def evaluate(self, model, splits, device, plot_dir=None, epoch=0):
        """(accuracies, per_class): accuracies as `test` returns them; per_class, with
        return_per_class, {split: {class: {"queries": count, metric: value}}} for every class
        with at least two samples (a lone sample has nothing to retrieve), else None. With
        `visualize`, a scatter plot per split goes to `plot_dir` (if given) as
        `<split>_<visualizer>_epoch<epoch>.png`."""
        accuracies, per_class = {}, {}
        for name, dataset in splits.items():
            embeddings, labels = self.embed(model, dataset, device, description=f"eval {name}")
            if self.visualize and plot_dir is not None:
                save_scatter_plot(embeddings, labels, name, plot_dir, epoch)
            scores = self.accuracy_calculator.get_accuracy(
                embeddings, labels, embeddings, labels, ref_includes_query=True
            )
            if self.return_per_class:
                accuracies[name], per_class[name] = overall_and_per_class(scores, labels)
            else:
                accuracies[name] = {metric: float(value) for metric, value in scores.items()}
        return accuracies, per_class if self.return_per_class else None


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


def save_scatter_plot(embeddings, labels, split_name, folder, epoch):
    visualizer = default_visualizer()
    points = visualizer.fit_transform(embeddings.cpu().numpy())
    return ScatterPlotHook(folder)(
        visualizer, points, labels.cpu().numpy(), split_name, type(visualizer).__name__, epoch
    )
