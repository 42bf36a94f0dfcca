"""CUB-200-2011: PML's splits, sizes, labels and order, and clear errors for missing files."""

import hashlib
import json
import sys

import numpy as np
import pytest

from metric_runner.datasets import CUB, DatasetNotFoundError, cub
from tests.datasets.archive_server import assert_same_data, fetched_alike, tar_gz
from tests.datasets.fixtures import class_colour, count_of, make_cub

SPLITS = ("train", "test", "train+test")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_cub(tmp_path_factory.mktemp("cub"))


def test_classes_1_to_100_train_and_101_to_200_test(root):
    train, test, both = (CUB(root, split=s) for s in SPLITS)
    assert sorted(set(train.labels.tolist())) == list(range(1, 101))
    assert sorted(set(test.labels.tolist())) == list(range(101, 201))
    assert len(train) == sum(count_of(c) for c in range(1, 101))
    assert len(test) == sum(count_of(c) for c in range(101, 201))
    assert len(both) == len(train) + len(test)
    assert not set(train.paths) & set(test.paths)


@pytest.mark.parametrize("split", SPLITS)
def test_paths_labels_and_images_match_pml(root, split, pml_datasets):
    ours, theirs = CUB(root, split=split), pml_datasets.CUB(str(root), split=split)
    assert ours.paths == theirs.paths
    assert ours.labels.tolist() == list(theirs.labels)
    for index in (0, len(ours) // 2, len(ours) - 1):
        (image, label), (their_image, their_label) = ours[index], theirs[index]
        assert label == their_label and isinstance(label, int)
        assert np.array_equal(np.asarray(image), np.asarray(their_image.convert("RGB")))


def test_generate_split_rereads_the_current_split_as_pml_does(root, pml_datasets):
    ours, theirs = CUB(root, split="train"), pml_datasets.CUB(str(root), split="train")
    for dataset in (ours, theirs):
        dataset.split = "test"
        assert dataset.generate_split() is None
    assert ours.paths == theirs.paths
    assert ours.labels.tolist() == list(theirs.labels)
    assert sorted(set(ours.labels.tolist())) == list(range(101, 201))


def test_download_and_remove_leaves_what_pmls_does(
    tmp_path, monkeypatch, download_with_both, pml_datasets
):
    assert CUB.DOWNLOAD_URL == pml_datasets.CUB.DOWNLOAD_URL
    tree = make_cub(tmp_path / "source", class_ids=[1, 2, 100, 101, 150])
    payload = tar_gz(tree, ["CUB_200_2011"])
    monkeypatch.setattr(cub, "ARCHIVE_MD5", hashlib.md5(payload).hexdigest())
    archives = {"DOWNLOAD_URL": ("/files/CUB_200_2011.tgz", payload)}
    ours, theirs, server = download_with_both(CUB, pml_datasets.CUB, archives, split="test")
    assert_same_data(ours, theirs)
    assert sorted(ours.labels.tolist()) == [101, 101, 101, 150]
    assert fetched_alike(server)


def test_transforms_are_applied(root):
    dataset = CUB(root, split="test", transform=lambda im: im.size, target_transform=str)
    assert dataset[0] == ((12, 10), str(dataset.labels[0]))


def test_missing_root_names_the_path_the_layout_and_the_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        CUB(tmp_path / "nowhere")
    message = str(error.value)
    assert f"{tmp_path / 'nowhere'}' is not a folder" in message
    assert "CUB_200_2011/image_class_labels.txt" in message
    assert "download=True fetches https://data.caltech.edu/" in message
    assert "\n" not in message  # the runner prints it as one line


def test_missing_split_file_names_it(tmp_path):
    make_cub(tmp_path, num_classes=4)
    (tmp_path / "CUB_200_2011" / "image_class_labels.txt").unlink()
    with pytest.raises(FileNotFoundError, match="image_class_labels.txt is missing"):
        CUB(tmp_path, split="train")


def test_unknown_split_lists_the_supported_ones(root):
    with pytest.raises(ValueError, match="supported splits are: train, test, train\\+test"):
        CUB(root, split="val")


@pytest.mark.slow
def test_metric_run_trains_one_epoch_on_a_cub_tree(tmp_path, monkeypatch):
    """`metric-run dataset=cub dataset.root=...` end to end: MLRC folds (2 here), the tiny
    transform, one epoch; each class has its own colour, so retrieval on the untrained model
    already finds the right class when the labels reach the evaluation intact."""
    from metric_runner.runner import cli

    classes = [*range(1, 9), *range(101, 109)]
    make_cub(tmp_path / "cub", class_ids=classes, images_per_class=4, colour=class_colour)
    run_dir = tmp_path / "run"
    arguments = [
        "dataset=cub",
        f"dataset.root={tmp_path / 'cub'}",
        "dataset.num_folds=2",
        "transform=tiny",
        "epochs=1",
        "batch_size=16",
        "sampler.m=4",
        f"hydra.run.dir={run_dir}",
    ]
    monkeypatch.setattr(sys, "argv", ["metric-run", *arguments])
    cli.main()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    untrained = records[0]["accuracies"]
    assert untrained["test"]["precision_at_1"] == 1.0
    assert untrained["val"]["precision_at_1"] == 1.0
    assert np.isfinite(records[1]["train_loss"])
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    # Each split's labels 0..C-1 traced back to CUB's class ids: fold 0 of 2 validates the
    # first half of the training classes, the other half trains; classes 101+ test.
    label_map = json.loads((run_dir / "label_map.json").read_text())
    assert label_map == {
        "train": {"label": [5, 6, 7, 8]},
        "val": {"label": [1, 2, 3, 4]},
        "test": {"label": list(range(101, 109))},
    }
