"""Cars196 in Kaggle's layout: PML's class split (1-98 / 99-196) over both official parts."""

import pytest

from metric_runner.datasets import Cars196, DatasetError
from tests.datasets.archive_server import assert_same_data, fetched_alike, zip_of
from tests.datasets.fixtures import make_cars196

SPLITS = ("train", "test", "train+test")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_cars196(tmp_path_factory.mktemp("cars"))


def test_98_train_and_98_test_classes_from_both_official_parts(root):
    train, test = Cars196(root, split="train"), Cars196(root, split="test")
    assert sorted(set(train.labels.tolist())) == list(range(1, 99))
    assert sorted(set(test.labels.tolist())) == list(range(99, 197))
    # one official-train image per class, two or three official-test images
    assert len(train) == 98 + sum(2 + c % 2 for c in range(1, 99))
    assert any("/car_data/train/" in p for p in test.paths)
    assert any("Ram C-V Cargo Van Minivan 2012" in p for p in train.paths)


@pytest.mark.parametrize("split", SPLITS)
def test_paths_and_labels_match_pml(root, split, pml_datasets):
    ours, theirs = Cars196(root, split=split), pml_datasets.Cars196(str(root), split=split)
    assert ours.paths == theirs.paths
    assert ours.labels.tolist() == list(theirs.labels)


def test_missing_annotation_file_and_bad_class_id(tmp_path):
    make_cars196(tmp_path, num_classes=8)
    (tmp_path / "anno_test.csv").rename(tmp_path / "moved.csv")
    with pytest.raises(
        FileNotFoundError,
        match=r"anno_test.csv is missing.*download=True fetches https://www.kaggle.com",
    ):
        Cars196(tmp_path)
    (tmp_path / "anno_test.csv").write_text("00001.jpg,1,2,3,4,9\n")
    with pytest.raises(
        DatasetError, match=r"anno_test.csv, line 1: class id 9 is not in names.csv"
    ):
        Cars196(tmp_path)


def test_generate_split_rereads_the_current_split_as_pml_does(root, pml_datasets):
    ours, theirs = Cars196(root, split="test"), pml_datasets.Cars196(str(root), split="test")
    for dataset in (ours, theirs):
        dataset.split = "train+test"
        assert dataset.generate_split() is None
    assert ours.paths == theirs.paths
    assert ours.labels.tolist() == list(theirs.labels)
    assert sorted(set(ours.labels.tolist())) == list(range(1, 197))


def test_download_and_remove_leaves_what_pmls_does(tmp_path, download_with_both, pml_datasets):
    assert Cars196.DOWNLOAD_URL == pml_datasets.Cars196.DOWNLOAD_URL
    tree = make_cars196(tmp_path / "source", num_classes=100)
    payload = zip_of(tree, ["names.csv", "anno_train.csv", "anno_test.csv", "car_data"])
    archives = {"DOWNLOAD_URL": ("/api/v1/datasets/download/cars", payload)}
    ours, theirs, server = download_with_both(Cars196, pml_datasets.Cars196, archives, "test")
    assert_same_data(ours, theirs)
    assert sorted(set(ours.labels.tolist())) == [99, 100]
    assert fetched_alike(server)
