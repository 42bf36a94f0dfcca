import torch
from tqdm.auto import tqdm

from ..utils.accuracy_calculator import AccuracyCalculator
from .data import make_loader

DEFAULT_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


class KNNTester:
    """Retrieval accuracy of a model on each split, as PML's testers measure it.

    Every sample of a split is embedded (L2-normalized when `normalize_embeddings`), then each
    one queries the rest of its split: AccuracyCalculator's faiss k-NN search with the query
    itself excluded, `k` neighbours, and the `include`d metrics.
    """

    def __init__(
        self, include=DEFAULT_METRICS, k="max_bin_count", normalize_embeddings=True, batch_size=256
    ):
        self.accuracy_calculator = AccuracyCalculator(include=tuple(include), k=k)
        self.normalize_embeddings = normalize_embeddings
        self.batch_size = batch_size

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
        accuracies = {}
        for name, dataset in splits.items():
            embeddings, labels = self.embed(model, dataset, device, description=f"eval {name}")
            scores = self.accuracy_calculator.get_accuracy(
                embeddings, labels, embeddings, labels, ref_includes_query=True
            )
            accuracies[name] = {metric: float(value) for metric, value in scores.items()}
        return accuracies
