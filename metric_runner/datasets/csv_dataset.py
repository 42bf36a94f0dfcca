"""Images listed in a CSV file: ours (`path,label[,split][,super_label]`) or OML's dataset
format (`label,path,split,is_query,is_gallery[,category][,x_1,x_2,y_1,y_2]`), read unchanged."""

import csv
import math
from pathlib import Path

import numpy as np

from .base_dataset import (
    BaseDataset,
    DatasetError,
    DatasetNotFoundError,
    HierarchicalLabels,
)

# OML calls the test part "validation".
SPLIT_NAMES = {"train": "train", "test": "test", "validation": "test"}
TRUE_VALUES = ("true", "1")
FALSE_VALUES = ("false", "0")
# Values OML writes for "not given" (train rows' is_query / is_gallery, rows without a box).
EMPTY_VALUES = ("", "none", "nan")
MASK_COLUMNS = ("is_query", "is_gallery")
# OML's box columns: left, right, top, bottom, in pixels.
BOX_COLUMNS = ("x_1", "x_2", "y_1", "y_2")


class CSVDataset(HierarchicalLabels, BaseDataset):
    """`csv_file` (relative to `root` unless absolute) has a header with at least `path` and
    `label` (integer); image paths are relative to `root` (or absolute). With a `split` column
    (train, test or validation = test) the splits are train, test and train+test; without one
    the file is one split, train+test. With `hierarchical=True` and a `super_label` column (or
    OML's `category`, integers or names numbered in sorted order) labels are [N, 2]:
    (label, super_label).

    OML's columns: `is_query` / `is_gallery` (true/false or 1/0 on test rows, empty on train
    rows) give the test split's `is_query` and `is_gallery` masks (without is_gallery the
    gallery is every non-query); `x_1, x_2, y_1, y_2` (left, right, top, bottom; empty for rows
    without one) crop each image to its box before the transform. Other columns are ignored."""

    LAYOUT = (
        "<csv_file> with the header 'path,label[,split][,super_label]' (or OML's "
        "'label,path,split,is_query,is_gallery[,category][,x_1,x_2,y_1,y_2]'), one row per image",
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
            raise DatasetError(
                f"{self.csv_path}: hierarchical=True needs a super_label (or category) column"
            )
        labels = self.labels_at_levels(columns["label"], lambda: columns["super_label"])
        paths = [str(self.path(p)) for p, k in zip(columns["path"], keep) if k]
        # The masks only mean something on test rows (train rows leave them empty).
        masks = MASK_COLUMNS if split == "test" else ()
        self.is_query = self.is_gallery = self.boxes = None
        for name in masks:
            if name in columns:
                setattr(self, name, np.array(columns[name], dtype=bool)[keep])
        if "boxes" in columns:
            self.boxes = columns["boxes"][keep]
        # Only the arrays this file has are filtered with the paths (BaseDataset.generate_split).
        self.PER_SAMPLE = tuple(
            name for name in ("is_query", "is_gallery", "boxes") if getattr(self, name) is not None
        )
        return paths, labels[keep]

    def load_image(self, index):
        image = super().load_image(index)
        if self.boxes is None:
            return image
        return image.crop(box_in_image(self.boxes[index], image.size, self.paths[index]))


def box_in_image(box, size, path):
    """`box` (left, top, right, bottom; NaN for none) checked against the image `size`
    (width, height): the PIL crop box, or the whole image when the row has no box."""
    width, height = size
    if any(math.isnan(float(value)) for value in box):
        return (0, 0, width, height)
    left, top, right, bottom = (int(value) for value in box)
    if right > width or bottom > height:
        raise DatasetError(
            f"{path} is {width}x{height} pixels but its box (x_1={left}, x_2={right}, y_1={top}, "
            f"y_2={bottom}) reaches beyond it; fix the box in the CSV file"
        )
    return (left, top, right, bottom)


def crop_tensor(image, box, path):
    """A uint8 image tensor (C, H, W) cropped to `box` as `box_in_image` checks it."""
    left, top, right, bottom = box_in_image(box, (image.shape[2], image.shape[1]), path)
    return image[:, top:bottom, left:right]


def read_table(csv_path):
    """{column: list of values} of the CSV file, checked; OML's columns converted: `category`
    becomes super_label, is_query / is_gallery booleans, the box columns `boxes` [N, 4]."""
    with open(csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    columns = (
        {name.strip(): [(row[name] or "").strip() for row in rows] for name in rows[0]}
        if rows
        else {}
    )
    missing = {"path", "label"} - set(columns)
    if missing:
        raise DatasetError(
            f"{csv_path}: needs the columns path and label (missing "
            f"{', '.join(sorted(missing))}); found {', '.join(columns) or 'no rows'}"
        )
    if all(value.lower() in EMPTY_VALUES for value in columns.get("category", [""])):
        columns.pop("category", None)  # an optional column left empty: no categories
    if "category" in columns:
        if "super_label" in columns:
            raise DatasetError(f"{csv_path}: give super_label or category, not both")
        columns["super_label"] = category_numbers(columns.pop("category"), csv_path)
    for name in ("label", "super_label"):
        if name in columns:
            columns[name] = integers(columns[name], name, csv_path)
    if "split" in columns:
        columns["split"] = [
            SPLIT_NAMES[checked(value, number, "split", SPLIT_NAMES, csv_path)]
            for number, value in numbered(columns["split"])
        ]
    read_masks(columns, csv_path)
    read_boxes(columns, csv_path)
    return columns


def numbered(values):
    """(line number in the file, value): the header is line 1."""
    return enumerate(values, start=2)


def checked(value, number, column, accepted, csv_path, rows=""):
    """`value` in lower case; an error naming the row, column and `accepted` values if it is
    not one of them (`rows`: which rows these values are for, when it depends)."""
    if value.lower() not in accepted:
        raise DatasetError(
            f"{csv_path}, row {number}: the {column} column holds {value!r}; accepted values"
            f"{rows}: {', '.join(repr(a) if a == '' else a for a in accepted)}"
        )
    return value.lower()


def read_masks(columns, csv_path):
    """is_query / is_gallery as booleans: true/false or 1/0 on test rows; train rows may leave
    them empty (False). They need the split column, and is_gallery needs is_query."""
    present = [name for name in MASK_COLUMNS if name in columns]
    if present and "split" not in columns:
        raise DatasetError(
            f"{csv_path}: the {' and '.join(present)} column(s) need a split column "
            "(train / validation) to say which rows are evaluated"
        )
    if "is_gallery" in columns and "is_query" not in columns:
        raise DatasetError(f"{csv_path}: is_gallery needs an is_query column as well")
    for name in present:
        values = []
        for (number, value), split in zip(numbered(columns[name]), columns["split"]):
            if split == "train":
                accepted, rows = EMPTY_VALUES + TRUE_VALUES + FALSE_VALUES, " on train rows"
            else:
                accepted, rows = TRUE_VALUES + FALSE_VALUES, " on validation/test rows"
            values.append(checked(value, number, name, accepted, csv_path, rows) in TRUE_VALUES)
        columns[name] = values
    if "is_gallery" in columns:
        check_queries_against_gallery(columns, csv_path)


def check_queries_against_gallery(columns, csv_path):
    """The evaluated rows' queries lie all inside the gallery or all outside it (what
    KNNTester evaluates), refused here so that a run stops before it trains."""
    evaluated = [split != "train" for split in columns["split"]]
    rows = list(zip(evaluated, columns["is_query"], columns["is_gallery"]))
    inside = sum(test and query and gallery for test, query, gallery in rows)
    outside = sum(test and query and not gallery for test, query, gallery in rows)
    if inside and outside:
        raise DatasetError(
            f"{csv_path}: {inside} validation rows are queries in the gallery (is_query and "
            f"is_gallery true) and {outside} are queries outside it (is_gallery false); make "
            "is_gallery true on every is_query row (each query retrieves from the rest) or "
            "false on all of them (queries against a separate gallery)"
        )


def read_boxes(columns, csv_path):
    """The box columns (all four or none) as `boxes` [N, 4] float (left, top, right, bottom),
    NaN on rows that leave all four empty; no `boxes` when every row does."""
    present = [name for name in BOX_COLUMNS if name in columns]
    if not present:
        return
    if len(present) < len(BOX_COLUMNS):
        missing = sorted(set(BOX_COLUMNS) - set(present))
        raise DatasetError(
            f"{csv_path}: a box needs all of x_1, x_2, y_1, y_2 (missing {', '.join(missing)})"
        )
    boxes = np.full((len(columns["path"]), 4), math.nan)
    for row, values in enumerate(zip(*(columns[name] for name in BOX_COLUMNS))):
        boxes[row] = row_box(values, row + 2, csv_path)
    if not np.isnan(boxes).all():  # columns left empty on every row: nothing to crop
        columns["boxes"] = boxes


def row_box(values, number, csv_path):
    """One row's (left, top, right, bottom) from its x_1, x_2, y_1, y_2 values."""
    if all(value.lower() in EMPTY_VALUES for value in values):
        return (math.nan,) * 4
    problem = "must all be empty or all be pixel coordinates with 0 <= x_1 < x_2, 0 <= y_1 < y_2"
    try:
        left, right, top, bottom = (round(float(value)) for value in values)
    except ValueError:
        left = right = top = bottom = -1
    if not (0 <= left < right and 0 <= top < bottom):
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(BOX_COLUMNS, values))
        raise DatasetError(f"{csv_path}, row {number}: the box columns ({shown}) {problem}")
    return (left, top, right, bottom)


def category_numbers(values, csv_path):
    """OML's category as integers: the values themselves when all are integers, else each
    name's position among the sorted names (a fixed numbering whatever the row order)."""
    for number, value in numbered(values):
        if value.lower() in EMPTY_VALUES:
            raise DatasetError(
                f"{csv_path}, row {number}: the category column is empty; accepted values: "
                "an integer or a name on every row"
            )
    if all(value.lstrip("-").isdigit() for value in values):
        return values
    number_of = {name: str(number) for number, name in enumerate(sorted(set(values)))}
    return [number_of[value] for value in values]


def integers(values, column, path):
    for number, value in numbered(values):
        if not value.lstrip("-").isdigit():
            raise DatasetError(
                f"{path}, row {number}: the {column} column must hold integers, got {value!r} "
                "(number the classes, e.g. with pandas' factorize)"
            )
    return [int(value) for value in values]
