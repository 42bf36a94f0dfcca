"""Stanford Online Products: the official split files, PML's labels, the two-level labels."""

import numpy as np
import pytest

from metric_runner.datasets import StanfordOnlineProducts
from tests.datasets.archive_server import assert_same_data, fetched_alike, zip_of
from tests.datasets.fixtures import SOP_SUPER_CLASSES, count_of, make_sop

SPLITS = ("train", "test", "train+test")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_sop(tmp_path_factory.mktemp("sop"))


def test_split_files_decide_the_split(root):
    train, test = (StanfordOnlineProducts(root, split=s) for s in ("train", "test"))
    assert sorted(set(train.labels.tolist())) == list(range(1, 9))
    assert sorted(set(test.labels.tolist())) == list(range(9, 15))
    assert len(test) == sum(count_of(c) for c in range(9, 15))


@pytest.mark.parametrize("split", SPLITS)
def test_paths_and_labels_match_pml(root, split, pml_datasets):
    ours = StanfordOnlineProducts(root, split=split)
    theirs = pml_datasets.StanfordOnlineProducts(str(root), split=split)
    assert ours.paths == theirs.paths
    assert ours.labels.tolist() == list(theirs.labels)


def test_hierarchical_labels_are_class_and_super_class(root):
    flat = StanfordOnlineProducts(root, split="train+test")
    levels = StanfordOnlineProducts(root, split="train+test", hierarchical=True)
    assert levels.labels.shape == (len(flat), 2)
    np.testing.assert_array_equal(levels.labels[:, 0], flat.labels)
    np.testing.assert_array_equal(levels.labels[:, 1], flat.labels % len(SOP_SUPER_CLASSES) + 1)
    image, label = levels[3]
    assert label.tolist() == levels.labels[3].tolist()
    # every product belongs to one super-class
    for product in np.unique(levels.labels[:, 0]):
        assert len(np.unique(levels.labels[levels.labels[:, 0] == product, 1])) == 1


def test_missing_split_file_names_it_and_the_layout(tmp_path):
    make_sop(tmp_path, 2, 2)
    (tmp_path / "Stanford_Online_Products" / "Ebay_test.txt").unlink()
    with pytest.raises(FileNotFoundError) as error:
        StanfordOnlineProducts(tmp_path, split="train")
    assert "Stanford_Online_Products/Ebay_test.txt is missing" in str(error.value)
    assert "image_id class_id super_class_id path" in str(error.value)


def test_generate_split_rereads_the_current_split_as_pml_does(root, pml_datasets):
    ours = StanfordOnlineProducts(root, split="train")
    theirs = pml_datasets.StanfordOnlineProducts(str(root), split="train")
    for dataset in (ours, theirs):
        dataset.split = "test"
        assert dataset.generate_split() is None
    assert ours.paths == theirs.paths
    assert ours.labels.tolist() == list(theirs.labels)
    assert sorted(set(ours.labels.tolist())) == list(range(9, 15))


def test_download_and_remove_leaves_what_pmls_does(tmp_path, download_with_both, pml_datasets):
    theirs_class = pml_datasets.StanfordOnlineProducts
    assert StanfordOnlineProducts.DOWNLOAD_URL == theirs_class.DOWNLOAD_URL
    payload = zip_of(make_sop(tmp_path / "source", 3, 2), ["Stanford_Online_Products"])
    archives = {"DOWNLOAD_URL": ("/download", payload)}
    ours, theirs, server = download_with_both(StanfordOnlineProducts, theirs_class, archives)
    assert_same_data(ours, theirs)
    assert sorted(set(ours.labels.tolist())) == [1, 2, 3]
    assert fetched_alike(server)
