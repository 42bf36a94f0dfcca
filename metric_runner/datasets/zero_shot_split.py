"""Train / val / test of any image dataset, class-disjoint, for the runner: the one split helper.

The test split is the source's own test split (CUB classes 101-200, SOP's Ebay_test.txt,
In-Shop's query+gallery, ...); a source without one (an image folder, a CSV without a split
column) gives its first `train_class_fraction` of classes (sorted) to training and the rest to
test. The validation split comes out of the training classes:

- `val="fold"`: the MLRC protocol (Musgrave et al. 2020) — the training classes (sorted) are cut
  into `num_folds` contiguous folds of whole classes; fold `fold` validates, the others train.
  Train, val and test then share no class.
- `val="fraction"`: `val_fraction` of each training class's images (chosen with a fixed seed)
  validate; train and val share their classes.

Labels are mapped to 0..C-1 within each split (losses with class weights index by label);
`label_map` keeps the original label of each index.
"""

import functools
import inspect

import numpy as np
import torch

from .base_dataset import BaseDataset
from .batch_decode import check_decode_mode, decodes_on_device
from .csv_dataset import crop_tensor
from .image_pipeline import ImageFiles, image_transform, read_image

SPLITS = ("train", "val", "test")
VAL_MODES = ("fraction", "fold")


class ZeroShotSplit(ImageFiles):
    """`source`: the name of a dataset class of metric_runner.datasets (CUB, Cars196,
    StanfordOnlineProducts, INaturalist2018, InShop, CSVDataset, ImageFolder), built with
    `root`, `download`, `on_bad_image` and `options` (its other arguments, e.g.
    {csv_file: list.csv}); `transform`: settings of the train / eval pipeline
    (crop_size, resize, scale, ratio, flip, mean, std). For In-Shop's test split `is_query`
    marks the queries (the rest is the gallery); an OML CSV's test split has `is_query` and
    `is_gallery`; both are None elsewhere. `boxes` (an OML CSV's x_1, x_2, y_1, y_2; None
    without them) crop each image before the transform. `decode`: where images
    are decoded — "cpu" in the DataLoader's workers, "gpu" a batch at a time on the run's
    device (metric_runner.datasets.batch_decode), "auto" on the GPU when the run has one."""

    def __init__(
        self,
        source,
        root,
        split,
        transform=None,
        download=False,
        on_bad_image="skip",
        val="fraction",
        val_fraction=0.2,
        num_folds=4,
        fold=0,
        train_class_fraction=0.5,
        options=None,
        decode="cpu",
    ):
        check_settings(split, val, val_fraction, num_folds, fold, train_class_fraction)
        check_decode_mode(decode)
        self.decode = decode
        source_class = dataset_class(source)
        options = dict(options or {})
        check_options(source_class, options)
        parts = source_class.zero_shot_parts(root, options)

        def build(part):
            return load_source(
                source_class,
                str(root),
                part,
                download,
                on_bad_image,
                tuple(sorted(options.items())),
            )

        if parts is None:
            data = build("train+test")
            is_train_class = first_classes(class_column(data.labels), train_class_fraction, root)
        else:
            data = build(parts["test" if split == "test" else "train"])
            is_train_class = np.full(len(data.labels), split != "test")
        indices = np.flatnonzero(~is_train_class if split == "test" else is_train_class)
        if split != "test":
            labels = data.labels[indices]
            indices = indices[train_val_indices(labels, split, val, val_fraction, num_folds, fold)]
        labels, self.label_map = consecutive_labels(data.labels[indices])
        # The test split's query / gallery masks (In-Shop, an OML CSV) and the images' boxes.
        self.is_query, self.is_gallery = (
            per_sample(data, name, indices) if split == "test" else None
            for name in ("is_query", "is_gallery")
        )
        self.boxes = per_sample(data, "boxes", indices)
        self.source = data
        super().__init__(
            [data.paths[i] for i in indices],
            labels,
            image_transform(split == "train", **(transform or {})),
        )

    def __getitem__(self, index):
        if self.boxes is None:
            return super().__getitem__(index)
        image = crop_tensor(read_image(self.paths[index]), self.boxes[index], self.paths[index])
        return self.transform(image), self.labels[index]

    def decodes_on(self, device: torch.device | str) -> bool:
        """Whether the runner should hand this split to the DataLoader as EncodedImages and
        decode each batch on `device` (batch_decode.BatchDecoder), as `decode` asks."""
        return decodes_on_device(self.decode, device)


def per_sample(data, name, indices):
    """The source's per-image array `name` at `indices` as a tensor; None if it has none."""
    values = getattr(data, name, None)
    return None if values is None else torch.as_tensor(values[indices])


@functools.lru_cache(maxsize=4)
def load_source(source_class, root, part, download, on_bad_image, options):
    """The source dataset of one part, kept for the next split that needs it: train and val
    come from the same part, and building it reads every image header (seconds on SOP)."""
    return source_class(
        root, split=part, download=download, on_bad_image=on_bad_image, **dict(options)
    )


def check_settings(split, val, val_fraction, num_folds, fold, train_class_fraction):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if val not in VAL_MODES:
        raise ValueError(f"val must be one of {', '.join(VAL_MODES)}, got {val!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}")
    if not isinstance(fold, int) or not 0 <= fold < num_folds:
        raise ValueError(f"fold must be an integer in 0..{num_folds - 1}, got {fold!r}")
    if not 0 < train_class_fraction < 1:
        raise ValueError(f"train_class_fraction must be in (0, 1), got {train_class_fraction}")


def dataset_class(name):
    from metric_runner import datasets

    choices = sorted(
        n
        for n, value in vars(datasets).items()
        if isinstance(value, type) and issubclass(value, BaseDataset) and value is not BaseDataset
    )
    if name not in choices:
        raise ValueError(f"source: unknown dataset {name!r}; choose from {', '.join(choices)}")
    return getattr(datasets, name)


def check_options(source_class, options):
    given_elsewhere = {"root", "split", "download", "on_bad_image", "transform", "target_transform"}
    accepted = set(inspect.signature(source_class.__init__).parameters) - {"self"} - given_elsewhere
    unknown = set(options) - accepted
    if unknown:
        raise ValueError(
            f"options: {source_class.__name__} has no option {', '.join(sorted(unknown))} "
            f"(its options: {', '.join(sorted(accepted)) or 'none'})"
        )


def class_column(labels):
    """The class of each sample: the labels, or their first column when they have levels."""
    return labels if labels.ndim == 1 else labels[:, 0]


def first_classes(classes, fraction, root):
    """Mask of the samples whose class is among the first `fraction` of the sorted classes."""
    unique = np.unique(classes)
    num_train = round(len(unique) * fraction)
    if num_train < 2 or len(unique) - num_train < 2:
        raise ValueError(
            f"root {str(root)!r} has {len(unique)} classes; with train_class_fraction={fraction} "
            f"that leaves {num_train} train and {len(unique) - num_train} test classes, and each "
            "side needs at least 2"
        )
    return np.isin(classes, unique[:num_train])


def train_val_indices(labels, split, val, val_fraction, num_folds, fold):
    """Indices (into `labels`, all training classes) of the train or val split."""
    classes = class_column(labels)
    if val == "fold":
        unique = np.unique(classes)
        if len(unique) < num_folds:
            raise ValueError(
                f"val=fold: {len(unique)} training classes cannot make {num_folds} folds; "
                "lower num_folds"
            )
        is_val = np.isin(classes, np.array_split(unique, num_folds)[fold])
    else:
        is_val = np.zeros(len(classes), dtype=bool)
        rng = np.random.default_rng(0)  # fixed: the split must not depend on the run's seed
        for value in np.unique(classes):
            members = np.flatnonzero(classes == value)
            order = rng.permutation(len(members))
            is_val[members[order[: round(len(members) * val_fraction)]]] = True
    return np.flatnonzero(is_val if split == "val" else ~is_val)


def consecutive_labels(labels):
    """Labels mapped to 0..C-1 (per level), and {level: original label of each index}."""
    names = ("label", "super_label")
    columns = labels.reshape(len(labels), -1).T
    mapped, label_map = [], {}
    for name, column in zip(names, columns):
        originals, inverse = np.unique(column, return_inverse=True)
        mapped.append(inverse.reshape(-1))
        label_map[name] = originals.tolist()
    mapped = np.stack(mapped, axis=1)
    return (mapped[:, 0] if labels.ndim == 1 else mapped), label_map
