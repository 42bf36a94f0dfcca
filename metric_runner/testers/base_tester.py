"""Embeds every dataset split once and evaluates query splits against reference splits."""

from collections import defaultdict

import numpy as np
import torch
import tqdm
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset

from ..utils import common_functions as c_f
from ..utils.accuracy_calculator import AccuracyCalculator


def principal_components(embeddings, output_dimensionality):
    """Standardize each dimension (zero mean, unit unbiased variance), then project onto the
    top principal components (exact: eigenvectors of the d x d correlation matrix), as
    PML's testers do. A constant dimension is only centered."""
    centered = embeddings - embeddings.mean(dim=0)
    std = centered.std(dim=0) if len(centered) > 1 else torch.ones_like(centered[0])
    standardized = centered / torch.where(std > 0, std, 1)
    correlation = standardized.T.double() @ standardized.double() / max(1, len(centered) - 1)
    _, eigenvectors = torch.linalg.eigh(correlation)
    components = eigenvectors.flip(1)[:, :output_dimensionality].to(embeddings.dtype)
    return standardized @ components


class BaseTester:
    """Embeds each split of `dataset_dict` with the model and evaluates it with an
    AccuracyCalculator. `test()` returns `all_accuracies[split]["<metric>_level<L>"]`, with
    "epoch", and `AVERAGE_<metric>` when several label levels are evaluated.

    Labels may be multi-level, one column per level (`label_hierarchy_level`: an int or "all").
    `splits_to_eval` is a list of (query_split, [reference_splits]); each split is embedded once
    and, by default, evaluated against itself. `pca` reduces embeddings to that many dimensions
    (per split) before they are (optionally) normalized. `visualizer` (anything with
    fit_transform, e.g. umap.UMAP() or sklearn's PCA(2)) and `visualizer_hook(visualizer,
    embeddings_2d, labels, split_name, keyname, epoch)` plot each split; `end_of_testing_hook
    (tester)` runs with `tester.embeddings_and_labels` and `tester.all_accuracies` set.

    As PML's testers, embedding a dataset leaves the models in eval mode: a training loop puts
    them back in train mode itself (the trainers do at the start of every epoch).
    """

    def __init__(
        self,
        normalize_embeddings=True,
        use_trunk_output=False,
        batch_size=32,
        dataloader_num_workers=2,
        pca=None,
        data_device=None,
        dtype=None,
        data_and_label_getter=None,
        label_hierarchy_level=0,
        end_of_testing_hook=None,
        dataset_labels=None,
        set_min_label_to_zero=False,
        accuracy_calculator=None,
        visualizer=None,
        visualizer_hook=None,
    ):
        if set_min_label_to_zero and dataset_labels is None:
            raise ValueError(
                "set_min_label_to_zero=True needs dataset_labels (every label of the dataset)."
            )
        if not (
            label_hierarchy_level == "all"
            or (isinstance(label_hierarchy_level, int) and label_hierarchy_level >= 0)
        ):
            raise ValueError(
                f"label_hierarchy_level must be an int >= 0 or 'all', got {label_hierarchy_level!r}."
            )
        self.normalize_embeddings = normalize_embeddings
        self.use_trunk_output = use_trunk_output
        self.batch_size = batch_size
        self.dataloader_num_workers = dataloader_num_workers
        self.pca = pca
        self.data_device = (
            torch.device("cuda" if torch.cuda.is_available() else "cpu")
            if data_device is None
            else torch.device(data_device)
        )
        self.dtype = dtype
        self.data_and_label_getter = (
            self.default_data_and_label_getter
            if data_and_label_getter is None
            else data_and_label_getter
        )
        self.label_hierarchy_level = label_hierarchy_level
        self.end_of_testing_hook = end_of_testing_hook
        self.dataset_labels = dataset_labels
        self.set_min_label_to_zero = set_min_label_to_zero
        self.accuracy_calculator = accuracy_calculator
        self.visualizer = visualizer
        # visualizer_hook is the method that calls the user's hook when there is one.
        self.original_visualizer_hook = visualizer_hook
        self.reference_split_names = {}
        self.initialize_label_mapper()
        self.initialize_accuracy_calculator()

    def initialize_accuracy_calculator(self):
        if self.accuracy_calculator is None:
            self.accuracy_calculator = AccuracyCalculator()

    def initialize_label_mapper(self):
        self.label_mapper = self.build_label_mapper() if self.set_min_label_to_zero else None

    def visualizer_hook(self, *args, **kwargs):
        if self.original_visualizer_hook is not None:
            self.original_visualizer_hook(*args, **kwargs)

    @staticmethod
    def default_data_and_label_getter(batch):
        return batch[0], batch[1]

    def build_label_mapper(self):
        """Maps each level's labels (ints or strings) to their rank among that level's dataset labels."""
        dataset_labels = np.asarray(self.dataset_labels)
        if dataset_labels.ndim == 1:
            dataset_labels = dataset_labels[:, None]
        sorted_levels = [
            np.unique(dataset_labels[:, level]) for level in range(dataset_labels.shape[1])
        ]

        def mapper(labels):
            labels = np.asarray(labels)
            labels = labels[:, None] if labels.ndim == 1 else labels
            ranks = [
                np.searchsorted(sorted_levels[level], labels[:, level])
                for level in range(labels.shape[1])
            ]
            return torch.from_numpy(np.stack(ranks, axis=1)).long()

        return mapper

    def test(
        self,
        dataset_dict,
        epoch,
        trunk_model,
        embedder_model=None,
        splits_to_eval=None,
        collate_fn=None,
    ):
        splits_to_eval, splits_to_compute = self.get_splits_to_compute_embeddings(
            dataset_dict, splits_to_eval
        )
        self.embeddings_and_labels = self.get_all_embeddings_for_all_splits(
            dataset_dict, trunk_model, embedder_model, splits_to_compute, collate_fn
        )
        self.maybe_visualize(self.embeddings_and_labels, epoch)
        self.all_accuracies = defaultdict(dict)
        self.reference_split_names = dict(splits_to_eval)
        for query_split, reference_splits in splits_to_eval:
            self.all_accuracies[query_split]["epoch"] = epoch
            self.do_knn_and_accuracies(
                self.all_accuracies[query_split],
                self.embeddings_and_labels,
                query_split,
                reference_splits,
            )
        if self.end_of_testing_hook is not None:
            self.end_of_testing_hook(self)
        del self.embeddings_and_labels
        return self.all_accuracies

    def check_splits_to_eval(self, dataset_dict, splits_to_eval):
        if splits_to_eval is None:
            return [(name, [name]) for name in dataset_dict]
        splits_to_eval = [(query, list(references)) for query, references in splits_to_eval]
        unknown = {name for q, refs in splits_to_eval for name in (q, *refs)} - set(dataset_dict)
        if unknown:
            raise ValueError(
                f"splits_to_eval names {sorted(unknown)}, which dataset_dict lacks ({list(dataset_dict)})."
            )
        queries = [query for query, _ in splits_to_eval]
        if len(set(queries)) != len(queries):
            raise ValueError(
                "Each query split can appear once in splits_to_eval: merge its reference lists."
            )
        return splits_to_eval

    def get_splits_to_compute_embeddings(self, dataset_dict, splits_to_eval):
        """(splits_to_eval with each query split moved to the front of its reference splits,
        the name of every split to embed, each once)."""
        splits_to_eval = [
            (query, sorted(references, key=lambda name: name != query))
            for query, references in self.check_splits_to_eval(dataset_dict, splits_to_eval)
        ]
        names = dict.fromkeys(name for q, refs in splits_to_eval for name in (q, *refs))
        return splits_to_eval, list(names)

    def get_all_embeddings_for_all_splits(
        self, dataset_dict, trunk_model, embedder_model, splits_to_compute_embeddings, collate_fn
    ):
        """{split: get_embeddings_and_labels(dataset_dict[split])} for the splits named."""
        return {
            name: self.get_embeddings_and_labels(
                dataset_dict[name], trunk_model, embedder_model, collate_fn
            )
            for name in tqdm.tqdm(
                splits_to_compute_embeddings, desc="embedding splits", leave=False
            )
        }

    def maybe_combine_splits(self, embeddings_and_labels, splits):
        """The splits' (embeddings, labels, ...) tuples concatenated part by part, in `splits` order."""
        if len(splits) == 1:
            return tuple(embeddings_and_labels[splits[0]])
        parts = zip(*(embeddings_and_labels[name] for name in splits))
        return tuple(torch.cat(part) for part in parts)

    def get_embeddings_and_labels(self, dataset, trunk_model, embedder_model, collate_fn):
        return self.get_all_embeddings(dataset, trunk_model, embedder_model, collate_fn)

    def dataloader(self, dataset, collate_fn):
        if isinstance(dataset, TensorDataset) and collate_fn is None:
            # One indexing call per batch instead of batch_size item fetches and a collate:
            # the same batches, much faster for small models on in-memory data.
            batches = BatchSampler(SequentialSampler(dataset), self.batch_size, drop_last=False)
            return DataLoader(
                dataset, batch_size=None, sampler=batches, num_workers=self.dataloader_num_workers
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.dataloader_num_workers,
            collate_fn=collate_fn,
        )

    def get_all_embeddings(
        self,
        dataset,
        trunk_model,
        embedder_model=None,
        collate_fn=None,
        eval=True,
        return_as_numpy=False,
    ):
        """(embeddings (N, d), labels (N, num_levels)) of a whole dataset, in dataset order,
        post-processed (pca, normalization). With `eval`, the models are left in eval mode."""
        if eval:
            set_to_eval(trunk_model, embedder_model)
        embeddings, labels = self.compute_all_embeddings(
            self.dataloader(dataset, collate_fn), trunk_model, embedder_model
        )
        embeddings = self.postprocess(embeddings)
        if return_as_numpy:
            return embeddings.cpu().numpy(), labels.cpu().numpy()
        return embeddings, labels

    def compute_all_embeddings(self, dataloader, trunk_model, embedder_model):
        """(raw embeddings, labels (N, num_levels)) of every batch of `dataloader`, without
        gradients and without changing the models' modes."""
        embedder_model = torch.nn.Identity() if embedder_model is None else embedder_model
        embeddings, labels = [], []
        with torch.no_grad():
            for batch in dataloader:
                data, batch_labels = self.data_and_label_getter(batch)
                embeddings.append(self.get_embeddings_for_eval(trunk_model, embedder_model, data))
                labels.append(self.process_labels(batch_labels))
        return torch.cat(embeddings), torch.cat(labels)

    def get_embeddings_for_eval(self, trunk_model, embedder_model, input_imgs):
        input_imgs = c_f.to_device(input_imgs, device=self.data_device, dtype=self.dtype)
        trunk_output = trunk_model(input_imgs)
        return trunk_output if self.use_trunk_output else embedder_model(trunk_output)

    def process_labels(self, labels):
        if self.label_mapper is not None:
            return self.label_mapper(c_f.to_numpy(labels) if torch.is_tensor(labels) else labels)
        labels = torch.as_tensor(labels)
        return labels.unsqueeze(1) if labels.ndim == 1 else labels

    def postprocess(self, embeddings):
        if self.pca is not None:
            # As PML's testers: reduce the raw embeddings, then normalize the reduced ones.
            embeddings = principal_components(embeddings, self.pca)
        return self.maybe_normalize(embeddings)

    def maybe_normalize(self, embeddings):
        if self.normalize_embeddings:
            return torch.nn.functional.normalize(embeddings, p=2, dim=1)
        return embeddings

    def label_levels_to_evaluate(self, query_labels):
        num_levels = query_labels.shape[1]
        if self.label_hierarchy_level == "all":
            return list(range(num_levels))
        if self.label_hierarchy_level >= num_levels:
            raise ValueError(
                f"label_hierarchy_level={self.label_hierarchy_level} but the labels have {num_levels} level(s)."
            )
        return [self.label_hierarchy_level]

    def ref_includes_query(self, query_split_name, reference_split_names):
        return query_split_name in reference_split_names

    def set_reference_and_query(
        self, embeddings_and_labels, query_split_name, reference_split_names
    ):
        """The reference is the concatenation of its splits, the query split first when it is
        one of them, so that ref_includes_query holds row for row."""
        query, query_labels = embeddings_and_labels[query_split_name][:2]
        ordered = sorted(reference_split_names, key=lambda name: name != query_split_name)
        reference, reference_labels = self.maybe_combine_splits(embeddings_and_labels, ordered)[:2]
        return query, query_labels, reference, reference_labels

    def do_knn_and_accuracies(
        self, accuracies, embeddings_and_labels, query_split_name, reference_split_names
    ):
        """The subclass's evaluation of one query split against its reference splits, written
        into `accuracies` (BaseTester only embeds; use GlobalEmbeddingSpaceTester or one of
        its kind)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define do_knn_and_accuracies; BaseTester is the base "
            "of GlobalEmbeddingSpaceTester, WithSameParentLabelTester and "
            "GlobalTwoStreamEmbeddingSpaceTester"
        )

    def accuracies_keyname(self, metric, label_hierarchy_level=0, average=False):
        return f"AVERAGE_{metric}" if average else f"{metric}_level{label_hierarchy_level}"

    def add_accuracies(self, accuracies, level_accuracies):
        """Store {level: {metric: value}} and, over several levels, the AVERAGE_ of each metric."""
        for level, metrics in level_accuracies.items():
            for metric, value in metrics.items():
                accuracies[self.accuracies_keyname(metric, level)] = value
        if len(level_accuracies) > 1:
            metrics = list(next(iter(level_accuracies.values())))
            self.calculate_average_accuracies(accuracies, metrics, list(level_accuracies))

    def calculate_average_accuracies(self, accuracies, metrics, label_levels):
        """Adds `AVERAGE_<metric>`, the mean of each metric over `label_levels`, to `accuracies`."""
        for metric in metrics:
            values = [accuracies[self.accuracies_keyname(metric, level)] for level in label_levels]
            accuracies[self.accuracies_keyname(metric, average=True)] = float(np.mean(values))

    def label_hierarchy_level_to_str(self, label_hierarchy_level):
        return str(label_hierarchy_level)

    def description_suffixes(self, base_name):
        """base_name plus the settings that change the numbers, for naming logged tables."""
        suffixes = [base_name]
        if self.pca is not None:
            suffixes.append(f"pca{self.pca}")
        if self.normalize_embeddings:
            suffixes.append("normalized")
        if self.use_trunk_output:
            suffixes.append("trunk")
        suffixes += [
            type(self).__name__,
            f"level_{self.label_hierarchy_level_to_str(self.label_hierarchy_level)}",
        ]
        description = self.accuracy_calculator.description()
        if description:
            suffixes.append(description)
        return "_".join(suffixes)

    def maybe_visualize(self, embeddings_and_labels, epoch):
        if self.visualizer is None or self.original_visualizer_hook is None:
            return
        for split_name, (embeddings, labels, *_) in embeddings_and_labels.items():
            embeddings_2d = self.visualizer.fit_transform(c_f.to_numpy(embeddings))
            for level in self.label_levels_to_evaluate(labels):
                keyname = f"{type(self.visualizer).__name__}_level{level}"
                self.visualizer_hook(
                    self.visualizer,
                    embeddings_2d,
                    c_f.to_numpy(labels[:, level]),
                    split_name,
                    keyname,
                    epoch,
                )


def set_to_eval(*models):
    for model in models:
        if model is not None:
            model.eval()
