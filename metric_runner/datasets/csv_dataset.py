"""Images listed in a CSV file: `path,label[,split][,super_label]` (the columns OML users have)."""

import csv
from pathlib import Path

import numpy as np

from .base_dataset import BaseDataset, DatasetError, DatasetNotFoundError, HierarchicalLabels

# OML calls the test part "validation".
SPLIT_NAMES = {"train": "train", "test": "test", "validation": "test"}


class CSVDataset(HierarchicalLabels, BaseDataset):
    """`csv_file` (relative to `root` unless absolute) has a header with at least `path` and
    `label` (integer); image paths are relative to `root`. With a `split` column (train, test or
    validation = test) the splits are train, test and train+test; without one the file is one
    split, train+test. With `hierarchical=True` and a `super_label` column labels are [N, 2]:
    (label, super_label). Other columns are ignored."""

    LAYOUT = (
        "<csv_file> with the header 'path,label[,split][,super_label]', one row per image",
        "the images at the rows' paths, relative to root",
    )

    def __init__(
        self,
        root,
        split="train+test",
        transform=None,
        target_transform=None,
        download=False,
        on_bad_image="skip",
        csv_file="dataset.csv",
        hierarchical=False,
    ):
        self.csv_path = Path(root).expanduser() / Path(csv_file).expanduser()
        super().__init__(
            root, split, transform, target_transform, download, on_bad_image, hierarchical
        )

    def check_complete(self):
        super().check_complete()
        if not self.csv_path.is_file():
            raise DatasetNotFoundError(self.not_found_message(f"{self.csv_path} is missing"))
        self.columns = read_table(self.csv_path)

    def get_available_splits(self):
        return ("train", "test", "train+test") if "split" in self.columns else ("train+test",)

    @classmethod
    def zero_shot_parts(cls, root, options):
        csv_path = (
            Path(root).expanduser() / Path(options.get("csv_file", "dataset.csv")).expanduser()
        )
        if not csv_path.is_file():
            return None  # building the dataset then reports the missing file
        with open(csv_path, newline="") as file:
            header = [name.strip() for name in next(csv.reader(file), [])]
        return super().zero_shot_parts(root, options) if "split" in header else None

    def load(self, split):
        columns = self.columns
        keep = np.ones(len(columns["path"]), dtype=bool)
        if split != "train+test":
            keep = np.array([value == split for value in columns["split"]])
        if self.hierarchical and "super_label" not in columns:
            raise DatasetError(f"{self.csv_path}: hierarchical=True needs a super_label column")
        labels = self.labels_at_levels(columns["label"], lambda: columns["super_label"])
        paths = [str(self.path(p)) for p, k in zip(columns["path"], keep) if k]
        return paths, labels[keep]


def read_table(csv_path):
    """{column: list of values} of the CSV file, checked."""
    with open(csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    columns = (
        {name.strip(): [row[name].strip() for row in rows] for name in rows[0]} if rows else {}
    )
    missing = {"path", "label"} - set(columns)
    if missing:
        raise DatasetError(
            f"{csv_path}: needs the columns path and label (missing "
            f"{', '.join(sorted(missing))}); found {', '.join(columns) or 'no rows'}"
        )
    for name in ("label", "super_label"):
        if name in columns:
            columns[name] = integers(columns[name], name, csv_path)
    if "split" in columns:
        unknown = sorted(set(columns["split"]) - set(SPLIT_NAMES))
        if unknown:
            raise DatasetError(
                f"{csv_path}: the split column holds {', '.join(map(repr, unknown))}; "
                f"use {', '.join(SPLIT_NAMES)}"
            )
        columns["split"] = [SPLIT_NAMES[value] for value in columns["split"]]
    return columns


def integers(values, column, path):
    try:
        return [int(value) for value in values]
    except ValueError:
        bad = next(v for v in values if not v.lstrip("-").isdigit())
        raise DatasetError(
            f"{path}: the {column} column must hold integers, got {bad!r} "
            "(number the classes, e.g. with pandas' factorize)"
        ) from None
