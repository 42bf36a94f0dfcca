"""iNaturalist 2018 with PML's split files: order, species labels, taxonomy levels."""

import hashlib

import numpy as np
import pytest

from metric_runner.datasets import DatasetError, INaturalist2018, inaturalist2018
from metric_runner.datasets.download import DownloadError
from tests.datasets.archive_server import assert_same_data, fetched_alike, tar_gz, zip_of
from tests.datasets.fixtures import INAT_KINGDOMS, make_inaturalist2018

SPLITS = ("train", "test", "train+test")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_inaturalist2018(tmp_path_factory.mktemp("inat"))


def test_split_files_give_disjoint_species(root):
    train, test = (INaturalist2018(root, split=s) for s in ("train", "test"))
    assert sorted(set(train.labels.tolist())) == list(range(6))
    assert sorted(set(test.labels.tolist())) == list(range(6, 10))
    assert len(train) + len(test) == len(INaturalist2018(root))


@pytest.mark.parametrize("split", SPLITS)
def test_paths_and_labels_match_pml(root, split, pml_datasets):
    ours = INaturalist2018(root, split=split)
    theirs = pml_datasets.INaturalist2018(str(root), split=split)
    assert ours.paths == theirs.paths
    assert ours.labels.tolist() == list(theirs.labels)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("supercategory", lambda s: sorted(INAT_KINGDOMS).index(INAT_KINGDOMS[s % 3])),
        ("genus", lambda s: s // 2),
    ],
)
def test_two_level_labels_follow_the_taxonomy(root, level, expected):
    dataset = INaturalist2018(root, hierarchical=True, super_level=level)
    species = dataset.labels[:, 0]
    np.testing.assert_array_equal(dataset.labels[:, 1], [expected(s) for s in species])


def test_bad_level_and_unknown_image(root, tmp_path):
    with pytest.raises(DatasetError, match="super_level must be one of supercategory"):
        INaturalist2018(root, super_level="species")
    make_inaturalist2018(tmp_path, num_species=4, num_train_species=2)
    split_file = tmp_path / "Inat_dataset_splits" / "Inaturalist_test_set1.txt"
    split_file.write_text(split_file.read_text() + "train_val2018/Fungi/99/lost.jpg\n")
    with pytest.raises(DatasetError, match="in neither train2018.json nor val2018.json"):
        INaturalist2018(tmp_path, split="test")


def test_missing_split_files_name_their_url(tmp_path):
    make_inaturalist2018(tmp_path, num_species=4, num_train_species=2)
    (tmp_path / "Inat_dataset_splits" / "Inaturalist_train_set1.txt").unlink()
    with pytest.raises(FileNotFoundError) as error:
        INaturalist2018(tmp_path, split="train", download=True)  # the rest is there: no fetch
    assert "Inaturalist_train_set1.txt is missing" in str(error.value)
    assert "drive.google.com/uc?id=1sXfkBTFDrRU3__-NUs1qBP3sf_0uMB98" in str(error.value)


def test_generate_split_rereads_the_current_split_as_pml_does(root, pml_datasets):
    ours = INaturalist2018(root, split="test")
    theirs = pml_datasets.INaturalist2018(str(root), split="test")
    for dataset in (ours, theirs):
        dataset.split = "train"
        assert dataset.generate_split() is None
    assert ours.paths == theirs.paths
    assert ours.labels.tolist() == list(theirs.labels)
    assert sorted(set(ours.labels.tolist())) == list(range(6))


URL_ATTRIBUTES = {  # URL attribute -> (served at, top-level entries, checksum constant)
    "IMG_DOWNLOAD_URL": ("/2018/train_val2018.tar.gz", ["train_val2018"], "IMAGES_MD5"),
    "TRAIN_ANN_URL": ("/2018/train2018.json.tar.gz", ["train2018.json"], "TRAIN_ANN_MD5"),
    "VAL_ANN_URL": ("/2018/val2018.json.tar.gz", ["val2018.json"], "VAL_ANN_MD5"),
    "SPLITS_URL": ("/uc", ["Inat_dataset_splits"], None),
}


def inat_archives(tree, monkeypatch):
    """The four archives of `tree` as the URL attributes serve them; our published MD5s are
    pointed at them (the split files have none)."""
    archives = {}
    for attribute, (path, names, checksum) in URL_ATTRIBUTES.items():
        payload = zip_of(tree, names) if checksum is None else tar_gz(tree, names)
        if checksum is not None:
            monkeypatch.setattr(inaturalist2018, checksum, hashlib.md5(payload).hexdigest())
        archives[attribute] = (path, payload)
    return archives


def test_download_and_remove_leaves_what_pmls_does(
    tmp_path, monkeypatch, download_with_both, pml_datasets
):
    for attribute in URL_ATTRIBUTES:
        assert getattr(INaturalist2018, attribute) == getattr(
            pml_datasets.INaturalist2018, attribute
        )
    archives = inat_archives(make_inaturalist2018(tmp_path / "source", 5, 3), monkeypatch)
    their_class = pml_datasets.INaturalist2018
    ours, theirs, server = download_with_both(INaturalist2018, their_class, archives, "test")
    assert_same_data(ours, theirs)
    assert sorted(set(ours.labels.tolist())) == [3, 4]
    assert fetched_alike(server)


def test_download_checks_the_published_checksums(tmp_path, monkeypatch, serve):
    archives = inat_archives(make_inaturalist2018(tmp_path / "source", 4, 2), monkeypatch)
    monkeypatch.setattr(inaturalist2018, "VAL_ANN_MD5", "0" * 32)
    server = serve(dict(archives.values()))
    for attribute, (path, _) in archives.items():
        monkeypatch.setattr(INaturalist2018, attribute, server.url(path))
    with pytest.raises(DownloadError, match="val2018.json.tar.gz: the downloaded file's MD5"):
        INaturalist2018(tmp_path / "data", download=True)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "train2018.json",
        "train_val2018",
    ]
