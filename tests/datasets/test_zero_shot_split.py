"""ZeroShotSplit, the one split helper: MLRC folds, per-class fractions, class-division for
sources without a test split, labels renumbered 0..C-1 with the map kept, In-Shop queries."""

import json
import sys

import numpy as np
import pytest
import torch

from metric_runner.datasets import ZeroShotSplit
from metric_runner.runner.data import save_label_maps
from tests.datasets.fixtures import (
    SOP_SUPER_CLASSES,
    count_of,
    make_cub,
    make_inshop,
    make_sop,
    save_jpeg,
)

TINY = {"crop_size": 8, "resize": 10}


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    return make_cub(tmp_path_factory.mktemp("cub"))


def split(root, name, source="CUB", **settings):
    return ZeroShotSplit(source, root, name, transform=TINY, **settings)


def original_labels(dataset):
    return np.array(dataset.label_map["label"])[dataset.labels.numpy()]


@pytest.mark.parametrize("fold", range(4))
def test_mlrc_folds_are_class_disjoint_quarters_of_the_training_classes(cub, fold):
    train, val, test = (
        split(cub, s, val="fold", num_folds=4, fold=fold) for s in ("train", "val", "test")
    )
    train_classes, val_classes, test_classes = (
        set(original_labels(d).tolist()) for d in (train, val, test)
    )
    assert val_classes == set(range(25 * fold + 1, 25 * fold + 26))
    assert train_classes == set(range(1, 101)) - val_classes
    assert test_classes == set(range(101, 201))
    assert len(val) == sum(count_of(c) for c in val_classes)
    assert len(train) + len(val) == sum(count_of(c) for c in range(1, 101))
    assert not set(train.paths) & set(val.paths)


def test_every_training_class_validates_in_exactly_one_fold(cub):
    seen = [
        set(original_labels(split(cub, "val", val="fold", num_folds=3, fold=k)).tolist())
        for k in range(3)
    ]
    assert sorted(c for fold in seen for c in fold) == list(range(1, 101))
    assert [len(f) for f in seen] == [34, 33, 33]  # contiguous, as even as they come


def test_labels_are_renumbered_and_the_map_leads_back(cub):
    test = split(cub, "test")
    assert test.labels.dtype == torch.long
    assert test.labels.min() == 0 and test.labels.max() == 99
    folder_class = [int(p.split("/")[-2][:3]) for p in test.paths]
    np.testing.assert_array_equal(original_labels(test), folder_class)


def test_fraction_holds_out_part_of_each_class(cub):
    train, val = (
        split(cub, "train", val="fraction", val_fraction=0.5),
        split(cub, "val", val="fraction", val_fraction=0.5),
    )
    assert set(original_labels(val).tolist()) <= set(original_labels(train).tolist())
    assert not set(train.paths) & set(val.paths)
    per_class = np.bincount(original_labels(val), minlength=101)[1:]
    np.testing.assert_array_equal(per_class, [round(count_of(c) * 0.5) for c in range(1, 101)])
    again = split(cub, "val", val="fraction", val_fraction=0.5)
    assert again.paths == val.paths  # the split does not depend on the run's seed


def test_items_are_transformed_tensors(cub):
    torch.manual_seed(0)
    image, label = split(cub, "train")[0]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32
    assert label.dtype == torch.long and label.ndim == 0
    eval_image, _ = split(cub, "test")[0]
    assert torch.equal(eval_image, split(cub, "test")[0][0])  # eval is deterministic


def test_folder_sources_divide_their_classes(tmp_path):
    """An image folder has no test split: the first half of its sorted classes train."""
    for label in range(6):
        for index in range(5):
            save_jpeg(tmp_path / f"class_{label}" / f"{index}.jpg", label, index)
    train, val, test = (split(tmp_path, s, source="ImageFolder") for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (12, 3, 15)  # 1 of 5 images per class is val
    assert train.label_map["label"] == [0, 1, 2] and test.label_map["label"] == [3, 4, 5]
    with pytest.raises(
        ValueError,
        match="has 6 classes; with train_class_fraction=0.9 that leaves 5 train and 1 test",
    ):
        split(tmp_path, "train", source="ImageFolder", train_class_fraction=0.9)


def test_inshop_test_split_marks_queries(tmp_path):
    make_inshop(tmp_path)
    test, train = (
        split(tmp_path, "test", source="InShop"),
        split(tmp_path, "train", source="InShop", val="fold", num_folds=2),
    )
    assert test.is_query.tolist() == [True] * 5 + [False] * (len(test) - 5)
    assert train.is_query is None
    assert set(test.label_map["label"]) == set(range(7, 12))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"source": "Cub"}, "source: unknown dataset 'Cub'; choose from CSVDataset, CUB, Cars196"),
        ({"val": "folds"}, "val must be one of fraction, fold"),
        ({"val": "fold", "fold": 4}, "fold must be an integer in 0..3, got 4"),
        (
            {"options": {"csv_file": "x.csv"}},
            "options: CUB has no option csv_file \\(its options: none\\)",
        ),
    ],
)
def test_bad_settings_are_explained(cub, settings, message):
    with pytest.raises(ValueError, match=message):
        split(cub, "train", **{"source": "CUB", **settings})


def test_label_maps_are_saved_in_the_run_directory(cub, tmp_path):
    splits = {s: split(cub, s, val="fold") for s in ("train", "val", "test")}
    path = save_label_maps(splits, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["val"]["label"] == list(range(1, 26))
    assert saved["test"]["label"] == list(range(101, 201))
    assert (
        save_label_maps({"train": torch.utils.data.TensorDataset(torch.zeros(1))}, tmp_path / "x")
        is None
    )


def test_two_level_labels_are_renumbered_per_level(tmp_path):
    make_sop(tmp_path)
    train = split(
        tmp_path, "train", source="StanfordOnlineProducts", options={"hierarchical": True}
    )
    assert train.labels.shape == (len(train), 2)
    products, supers = (
        np.array(train.label_map[k])[train.labels[:, i].numpy()]
        for i, k in enumerate(("label", "super_label"))
    )
    np.testing.assert_array_equal(supers, products % len(SOP_SUPER_CLASSES) + 1)
    assert train.labels[:, 1].max() == len(train.label_map["super_label"]) - 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("missing root", "is not a folder. Expected under root: CUB_200_2011/images.txt"),
        ("corrupt image", "1 image(s) cannot be read: "),
    ],
)
def test_metric_run_reports_data_problems_in_one_line(
    tmp_path, monkeypatch, capsys, problem, expected
):
    from metric_runner.runner import cli

    root = tmp_path / "cub"
    if problem == "corrupt image":
        make_cub(root, num_classes=4, shuffle=False)
        (root / "CUB_200_2011" / "images" / "001.Bird_1" / "Bird_1_0.jpg").write_bytes(b"garbage")
    arguments = [
        "dataset=cub",
        f"dataset.root={root}",
        "dataset.on_bad_image=error",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    monkeypatch.setattr(sys, "argv", ["metric-run", *arguments])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    assert exit.value.code == 1  # data problems exit 1 (config mistakes 2), as the README says
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "run").exists()  # a run that never started leaves no directory


def test_worker_processes_give_the_same_batches(cub):
    from metric_runner.runner.data import make_loader

    test = split(cub, "test")
    inline = list(make_loader(test, 64))
    with_workers = make_loader(test, 64, num_workers=2)
    assert with_workers.persistent_workers
    for (images, labels), (expected_images, expected_labels) in zip(
        with_workers, inline, strict=True
    ):
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
