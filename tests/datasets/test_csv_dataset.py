"""CSVDataset: path,label[,split][,super_label] rows relative to a root, and OML's format
(label,path,split,is_query,is_gallery[,category][,x_1,x_2,y_1,y_2]) read unchanged."""

import numpy as np
import pytest
import torch
from PIL import Image

from metric_runner.datasets import CSVDataset, DatasetError, ZeroShotSplit
from metric_runner.datasets.base_dataset import open_rgb
from metric_runner.datasets.batch_decode import EncodedImages
from metric_runner.datasets.image_pipeline import image_transform, read_image
from tests.datasets.fixtures import save_jpeg


@pytest.fixture
def root(tmp_path):
    rows = ["path,label,split,super_label"]
    for label in range(4):
        for index in range(2):
            save_jpeg(tmp_path / "images" / f"{label}_{index}.jpg", label, index)
            split = "train" if label < 2 else "validation"  # OML's name for the test part
            rows.append(f"images/{label}_{index}.jpg,{label},{split},{label // 2 + 10}")
    (tmp_path / "dataset.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_split_column_and_labels(root):
    train, test = CSVDataset(root, split="train"), CSVDataset(root, split="test")
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [2, 2, 3, 3]
    assert train.paths[0] == str(root / "images" / "0_0.jpg")
    assert len(CSVDataset(root)) == 8


def test_super_labels_give_two_levels(root):
    dataset = CSVDataset(root, hierarchical=True)
    assert dataset.labels.tolist() == [[c, c // 2 + 10] for c in range(4) for _ in range(2)]


def test_without_a_split_column_the_file_is_one_split(root):
    lines = (root / "dataset.csv").read_text().splitlines()
    (root / "plain.csv").write_text("\n".join(line.rsplit(",", 2)[0] for line in lines))
    assert len(CSVDataset(root, csv_file="plain.csv")) == 8
    with pytest.raises(DatasetError, match="supported splits are: train\\+test"):
        CSVDataset(root, split="train", csv_file="plain.csv")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,label\na.jpg,1\n", "needs the columns path and label \\(missing path\\)"),
        ("path,label\na.jpg,cat\n", "row 2: the label column must hold integers, got 'cat'"),
        (
            "path,label,split\na.jpg,1,train\nb.jpg,2,dev\n",
            "row 3: the split column holds 'dev'; accepted values: train, test, validation",
        ),
    ],
)
def test_bad_files_are_explained(tmp_path, content, message):
    (tmp_path / "dataset.csv").write_text(content)
    with pytest.raises(DatasetError, match=message):
        CSVDataset(tmp_path)


def test_missing_csv_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.csv is missing.*path,label"):
        CSVDataset(tmp_path)


# OML's format: train rows leave is_query / is_gallery empty; validation rows set them. Rows
# 2-5 train (labels 0, 1; categories "shoes", "bags"); rows 6-11 validate (labels 2, 3). Row 7
# has a box (x 2..9, y 1..6 of a 12x10 image); row 9's path is absolute.
OML_HEADER = "label,path,split,is_query,is_gallery,category,x_1,x_2,y_1,y_2"
OML_ROWS = [
    ("0", "images/0_0.jpg", "train", "", "", "shoes", "", "", "", ""),
    ("0", "images/0_1.jpg", "train", "", "", "shoes", "", "", "", ""),
    ("1", "images/1_0.jpg", "train", "None", "None", "bags", "", "", "", ""),
    ("1", "images/1_1.jpg", "train", "", "", "bags", "", "", "", ""),
    ("2", "images/2_0.jpg", "validation", "True", "False", "shoes", "", "", "", ""),
    ("2", "images/2_1.jpg", "validation", "False", "True", "shoes", "2", "9", "1", "6"),
    ("2", "images/2_2.jpg", "validation", "0", "1", "shoes", "", "", "", ""),
    ("3", "ABSOLUTE/images/3_0.jpg", "validation", "1", "0", "bags", "", "", "", ""),
    ("3", "images/3_1.jpg", "validation", "false", "true", "bags", "", "", "", ""),
    ("3", "images/3_2.jpg", "validation", "0", "0", "bags", "", "", "", ""),
]


def noise_jpeg(path, seed):
    """A 12x10 JPEG of noise, so that a crop from the wrong place has other pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def write_oml_csv(root, rows=OML_ROWS, name="oml.csv"):
    lines = [OML_HEADER]
    for row in rows:
        lines.append(",".join(row).replace("ABSOLUTE", str(root)))
    (root / name).write_text("\n".join(lines) + "\n")
    return name


@pytest.fixture
def oml_root(tmp_path):
    for seed, row in enumerate(OML_ROWS):
        noise_jpeg(tmp_path / row[1].replace("ABSOLUTE/", ""), seed)
    write_oml_csv(tmp_path)
    return tmp_path


def test_an_oml_csv_gives_splits_labels_masks_and_category_levels(oml_root):
    train = CSVDataset(oml_root, split="train", csv_file="oml.csv", hierarchical=True)
    test = CSVDataset(oml_root, split="test", csv_file="oml.csv", hierarchical=True)
    # Categories are names: numbered in sorted order, bags 0 and shoes 1.
    assert train.labels.tolist() == [[0, 1], [0, 1], [1, 0], [1, 0]]
    assert test.labels.tolist() == [[2, 1]] * 3 + [[3, 0]] * 3
    assert test.is_query.tolist() == [True, False, False, True, False, False]
    assert test.is_gallery.tolist() == [False, True, True, False, True, False]
    assert train.is_query is None and train.is_gallery is None  # train rows have no masks
    assert test.paths[3] == str(oml_root / "images" / "3_0.jpg")  # the absolute path
    assert (
        CSVDataset(oml_root, split="test", csv_file="oml.csv").labels.tolist() == [2] * 3 + [3] * 3
    )


def test_a_box_crops_the_image_before_the_transform(oml_root):
    test = CSVDataset(oml_root, split="test", csv_file="oml.csv")
    cropped, _ = test[1]
    whole = np.asarray(open_rgb(test.paths[1]))
    assert cropped.size == (7, 5)  # x_2 - x_1 by y_2 - y_1
    assert np.array_equal(np.asarray(cropped), whole[1:6, 2:9])
    assert test[0][0].size == (12, 10)  # a row without a box: the whole image


def test_the_runner_split_has_the_masks_and_crops_to_the_boxes(oml_root):
    options = {"csv_file": "oml.csv"}
    settings = {"crop_size": 4, "resize": 4}
    test = ZeroShotSplit("CSVDataset", oml_root, "test", settings, options=options)
    assert test.is_query.tolist() == [True, False, False, True, False, False]
    assert test.is_gallery.tolist() == [False, True, True, False, True, False]
    assert test.labels.tolist() == [0, 0, 0, 1, 1, 1]
    transform = image_transform(False, **settings)
    image = read_image(test.paths[1])
    assert torch.equal(test[1][0], transform(image[:, 1:6, 2:9]))
    assert not torch.equal(test[1][0], transform(image))
    assert torch.equal(test[0][0], transform(read_image(test.paths[0])))
    train = ZeroShotSplit("CSVDataset", oml_root, "train", options=options, val_fraction=0)
    assert train.is_query is None and train.is_gallery is None
    with pytest.raises(ValueError, match="bounding boxes .* use dataset.decode=cpu"):
        EncodedImages(test)


def test_an_oml_csv_without_boxes_decodes_batches_and_passes_the_masks(oml_root):
    rows = [row[:6] + ("",) * 4 for row in OML_ROWS]
    name = write_oml_csv(oml_root, rows, "plain.csv")
    test = ZeroShotSplit("CSVDataset", oml_root, "test", options={"csv_file": name})
    encoded = EncodedImages(test)
    assert torch.equal(encoded.is_query, test.is_query)
    assert torch.equal(encoded.is_gallery, test.is_gallery)


def with_cell(row_index, column, value):
    rows = [list(row) for row in OML_ROWS]
    rows[row_index][OML_HEADER.split(",").index(column)] = value
    return [tuple(row) for row in rows]


@pytest.mark.parametrize(
    ("row_index", "column", "value", "message"),
    [
        (
            4,
            "is_query",
            "",
            "row 6: the is_query column holds ''; accepted values on validation/test rows: "
            "true, 1, false, 0",
        ),
        (
            0,
            "is_gallery",
            "maybe",
            "row 2: the is_gallery column holds 'maybe'; accepted values on train rows: '', "
            "none, nan, true, 1, false, 0",
        ),
        (
            2,
            "split",
            "val",
            "row 4: the split column holds 'val'; accepted values: train, test, validation",
        ),
        (5, "x_2", "", "row 7: the box columns \\(x_1='2', x_2='', y_1='1', y_2='6'\\) must all"),
        (5, "x_2", "1", "row 7: the box columns .* 0 <= x_1 < x_2"),
        (3, "category", "", "row 5: the category column is empty"),
    ],
)
def test_a_bad_oml_value_names_its_row_column_and_accepted_values(
    oml_root, row_index, column, value, message
):
    write_oml_csv(oml_root, with_cell(row_index, column, value), "bad.csv")
    with pytest.raises(DatasetError, match=message):
        CSVDataset(oml_root, split="test", csv_file="bad.csv")


def test_a_box_beyond_the_image_is_refused_when_loaded(oml_root):
    write_oml_csv(oml_root, with_cell(5, "x_2", "13"), "wide.csv")
    test = CSVDataset(oml_root, split="test", csv_file="wide.csv")
    with pytest.raises(DatasetError, match="is 12x10 pixels but its box .*x_2=13"):
        test[1]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("path,label,is_query", "the is_query column\\(s\\) need a split column"),
        ("path,label,split,is_gallery", "is_gallery needs an is_query column"),
        (
            "path,label,split,x_1,x_2",
            "a box needs all of x_1, x_2, y_1, y_2 \\(missing y_1, y_2\\)",
        ),
        ("path,label,split,super_label,category", "give super_label or category, not both"),
    ],
)
def test_inconsistent_oml_columns_are_explained(tmp_path, header, message):
    values = {"path": "a.jpg", "label": "1", "split": "validation"}
    row = ",".join(values.get(name, "1") for name in header.split(","))
    (tmp_path / "dataset.csv").write_text(f"{header}\n{row}\n")
    with pytest.raises(DatasetError, match=message):
        CSVDataset(tmp_path)


def test_queries_partly_inside_the_gallery_are_refused_with_both_counts(tmp_path):
    # Row 6's query is also a gallery item, row 9's is not: no evaluation fits both.
    rows = [
        row if row[1] != "images/2_0.jpg" else (*row[:3], "1", "1", *row[5:]) for row in OML_ROWS
    ]
    name = write_oml_csv(tmp_path, rows)
    message = "1 validation rows are queries in the gallery .* and 1 are queries outside it"
    with pytest.raises(DatasetError, match=message):
        CSVDataset(tmp_path, csv_file=name)


def oml_run_root(root):
    """An OML CSV for a run: classes 0-5 train (5 images each); classes 10-12 validate with
    one query and three gallery images each; class 13's two rows are in neither."""
    lines = [OML_HEADER]
    rows = [(label, index, "train", "", "") for label in range(6) for index in range(5)]
    rows += [
        (label, index, "validation", str(int(index == 0)), str(int(index > 0)))
        for label in (10, 11, 12)
        for index in range(4)
    ]
    rows += [(13, index, "validation", "0", "0") for index in range(2)]
    for seed, (label, index, split, is_query, is_gallery) in enumerate(rows):
        noise_jpeg(root / "images" / f"{label}_{index}.jpg", seed)
        lines.append(f"{label},images/{label}_{index}.jpg,{split},{is_query},{is_gallery},,,,,")
    (root / "oml.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_a_run_on_an_oml_csv_evaluates_its_queries_against_its_gallery(tmp_path):
    from metric_runner.runner.cli import compose_config, run
    from metric_runner.runner.evaluate import evaluate_checkpoint

    root = oml_run_root(tmp_path / "data")
    dataset = [
        "dataset=csv",
        f"dataset.root={root}",
        "dataset.options.csv_file=oml.csv",
        "dataset.val_fraction=0.4",  # two val images per class: none is lone
        "device=cpu",
    ]
    training = [*dataset, "epochs=1", "transform=tiny", "sampler.m=2", "batch_size=8"]
    records = run(compose_config([*training, "num_workers=0"]), tmp_path / "run")
    assert set(records[-1]["accuracies"]) >= {"val", "test"}
    overrides = ["mode=test", f"checkpoint={tmp_path / 'run'}", *dataset]
    overrides.append("tester.return_per_class=true")
    record = evaluate_checkpoint(compose_config(overrides), tmp_path / "test", overrides)
    # One query per class (test labels 0-2; class 13, now 3, has none): the whole split would
    # give four queries per class. With three gallery images each, R-precision is in thirds.
    rows = record["per_class"]["test"]
    assert {label: row["queries"] for label, row in rows.items()} == {"0": 1, "1": 1, "2": 1}
    for row in rows.values():
        assert row["r_precision"] * 3 == pytest.approx(round(row["r_precision"] * 3))
    for metric, value in record["accuracies"]["test"].items():
        assert value == pytest.approx(sum(row[metric] for row in rows.values()) / 3)
