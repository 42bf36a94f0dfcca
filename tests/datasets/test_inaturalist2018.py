"""iNaturalist 2018 with PML's split files: order, species labels, taxonomy levels."""

import hashlib
import json

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


def test_a_level_missing_from_the_annotations_is_refused(root):
    with pytest.raises(DatasetError) as error:
        INaturalist2018(root, hierarchical=True, super_level="phylum")
    message = str(error.value)
    annotations = f"{root / 'train2018.json'} and {root / 'val2018.json'}"
    assert message.startswith(
        f"super_level='phylum': 10 of 10 categories in {annotations} have no 'phylum' field "
        "(e.g. category id 0); levels present in every category: supercategory, kingdom, genus. "
    )
    assert "https://ml-inat-competition-datasets.s3.amazonaws.com/2018/categories.json.tar.gz" in (
        message
    )
    assert f"extract it to {root / 'categories.json'}" in message
    # without hierarchical labels the level is never read
    flat = INaturalist2018(root, super_level="phylum")
    assert flat.labels.ndim == 1 and len(flat) == len(INaturalist2018(root))


# The un-obfuscated taxonomy of a 4-species root: genera unlike the annotations' (0,1 | 2,3).
TAXONOMY = [
    {"id": i, "name": name, "supercategory": "Plantae", "phylum": "Tracheophyta", "genus": genus}
    for i, (genus, name) in enumerate(
        [
            ("Quercus", "Q. robur"),
            ("Pinus", "P. nigra"),
            ("Pinus", "P. sylvestris"),
            ("Quercus", "Q. ilex"),
        ]
    )
]


@pytest.mark.parametrize("wrapped", [False, True], ids=["list", "annotation-style"])
def test_categories_json_supplies_the_taxonomy(tmp_path, wrapped):
    make_inaturalist2018(tmp_path, num_species=4, num_train_species=2)
    content = {"categories": TAXONOMY} if wrapped else TAXONOMY
    (tmp_path / "categories.json").write_text(json.dumps(content))
    dataset = INaturalist2018(tmp_path, hierarchical=True, super_level="genus")
    assert dataset.labels.shape == (11, 2)  # 2 + 3 + 4 + 2 images
    # genus ids in sorted order of the names: Pinus 0, Quercus 1
    rows = np.unique(dataset.labels, axis=0).tolist()
    assert rows == [[0, 1], [1, 0], [2, 0], [3, 1]]
    phyla = INaturalist2018(tmp_path, split="test", hierarchical=True, super_level="phylum")
    assert np.unique(phyla.labels, axis=0).tolist() == [[2, 0], [3, 0]]


def test_an_incomplete_categories_json_is_refused(tmp_path):
    make_inaturalist2018(tmp_path, num_species=4, num_train_species=2)
    categories = tmp_path / "categories.json"
    categories.write_text(json.dumps(TAXONOMY[:3]))
    with pytest.raises(DatasetError) as error:
        INaturalist2018(tmp_path, hierarchical=True, super_level="genus")
    assert str(error.value).startswith(f"{categories} has no category for species id(s) 3; ")
    assert INaturalist2018(tmp_path, split="train", hierarchical=True).labels.shape == (5, 2)
    with pytest.raises(DatasetError) as error:
        INaturalist2018(tmp_path, split="train", hierarchical=True, super_level="family")
    assert str(error.value).startswith(
        f"super_level='family': 3 of 3 categories in {categories} have no 'family' field "
        "(e.g. category id 0); levels present in every category: supercategory, phylum, genus. "
    )
    assert f"replace {categories} with it" in str(error.value)


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
