"""BaseDataset: unreadable images are skipped with one warning (or refused), never mislabelled;
the class is abstract and a subclass must say how to load — our way (`load`) or PML's
(`generate_split` and `download_and_remove`), which runs as it does on PML."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from metric_runner.datasets import CUB, BaseDataset, DatasetError
from tests.datasets.fixtures import make_cub


@pytest.fixture
def root_with_bad_images(tmp_path):
    make_cub(tmp_path, num_classes=4, shuffle=False)
    images = tmp_path / "CUB_200_2011" / "images"
    corrupt = images / "002.Bird_2" / "Bird_2_0.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not a JPEG any more")
    empty = images / "004.Bird_4" / "Bird_4_1.jpg"
    empty.write_bytes(b"")
    (images / "003.Bird_3" / "Bird_3_0.jpg").unlink()
    return tmp_path, {str(corrupt), str(empty), str(images / "003.Bird_3" / "Bird_3_0.jpg")}


def test_unreadable_images_are_skipped_with_one_warning_listing_them(root_with_bad_images):
    root, bad = root_with_bad_images
    with pytest.warns(RuntimeWarning) as caught:
        dataset = CUB(root, split="train")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("skipping 3 unreadable image(s): ")
    assert all(path in message for path in bad)
    assert not bad & set(dataset.paths)
    assert len(dataset) == sum(1 + c % 3 for c in range(1, 5)) - 3
    # the labels stay with their images: class folder NNN.Bird_c holds class c
    folders = [int(p.split("/")[-2][:3]) for p in dataset.paths]
    np.testing.assert_array_equal(dataset.labels, folders)


def test_on_bad_image_error_stops_and_names_the_files(root_with_bad_images):
    root, bad = root_with_bad_images
    with pytest.raises(DatasetError) as error:
        CUB(root, on_bad_image="error")
    assert str(error.value).startswith("3 image(s) cannot be read: ")
    assert all(path in str(error.value) for path in bad)
    assert "on_bad_image=skip" in str(error.value)
    with pytest.raises(DatasetError, match="on_bad_image must be one of skip, error"):
        CUB(root, on_bad_image="ignore")


def test_clean_data_gives_no_warning(tmp_path):
    make_cub(tmp_path, num_classes=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CUB(tmp_path)


def test_base_is_abstract_and_a_subclass_must_load(tmp_path):
    with pytest.raises(TypeError, match="BaseDataset is abstract"):
        BaseDataset(tmp_path)
    with pytest.raises(TypeError, match="must define load"):
        type("NoLoader", (BaseDataset,), {})


def test_a_custom_subclass_gets_the_whole_api(tmp_path):
    make_cub(tmp_path, num_classes=2, shuffle=False)
    files = sorted(str(p) for p in tmp_path.rglob("*.jpg"))

    class Mine(BaseDataset):
        SPLITS = ("all",)

        def load(self, split):
            return files, [7] * len(files)

    dataset = Mine(tmp_path, split="all", transform=lambda image: image.mode)
    assert len(dataset) == len(files) and dataset[1] == ("RGB", 7)


def pml_style_subclass(base, files, calls):
    """A dataset written for PML: its two hooks, recording each call in `calls`."""

    class Mine(base):
        def download_and_remove(self):
            calls.append(("download_and_remove", Path(self.root).is_dir()))
            Path(self.root).mkdir(exist_ok=True)

        def generate_split(self):
            calls.append(("generate_split", self.split))
            chosen = files[: len(files) // 2] if self.split == "train" else files
            self.paths, self.labels = chosen, [index % 3 for index in range(len(chosen))]

    return Mine


@pytest.mark.parametrize(
    ("root_holds", "download", "split"),
    [
        (None, True, "train"),
        ([], True, "train+test"),
        (["data.txt"], True, "train"),
        ([], False, "train"),
    ],
)
def test_a_pml_style_subclass_runs_as_on_pml(tmp_path, pml_datasets, root_holds, download, split):
    make_cub(tmp_path, num_classes=4, shuffle=False)
    files = sorted(str(p) for p in tmp_path.rglob("*.jpg"))
    results = []
    for side, base in (("ours", BaseDataset), ("theirs", pml_datasets.BaseDataset)):
        root = tmp_path / side
        if root_holds is not None:
            root.mkdir()
            for name in root_holds:
                (root / name).write_text("data")
        calls = []
        dataset = pml_style_subclass(base, files, calls)(root, split=split, download=download)
        first_image, first_label = dataset[0]
        results.append((calls, list(dataset.paths), list(dataset.labels), first_label))
        assert np.asarray(first_image.convert("RGB")).shape == (10, 12, 3)
    assert results[0] == results[1]
    # downloading happens where root is missing or empty, and the hook finds root made
    fetched = download and not root_holds
    assert (results[0][0][0] == ("download_and_remove", True)) == fetched


def test_a_pml_style_subclass_refuses_what_pml_refuses(tmp_path, pml_datasets):
    for base in (BaseDataset, pml_datasets.BaseDataset):
        mine = pml_style_subclass(base, [], [])
        with pytest.raises(ValueError):
            mine(tmp_path / "missing")
        with pytest.raises(ValueError, match="train, test, train\\+test"):
            mine(tmp_path, split="val")
