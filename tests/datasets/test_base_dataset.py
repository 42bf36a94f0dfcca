"""BaseDataset: unreadable images are skipped with one warning (or refused), never mislabelled;
the class is abstract and a subclass must say how to load — our way (`load`) or PML's
(`generate_split` and `download_and_remove`), which runs as it does on PML."""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from metric_runner.datasets import CUB, BaseDataset, DatasetError
from metric_runner.datasets.base_dataset import (
    TAIL_BYTES,
    CorruptImageError,
    DatasetNotFoundError,
    image_is_readable,
)
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


def encoded(format, size=(200, 200)):
    """A noisy image (so its compressed body is most of the file) encoded as `format`."""
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, format=format)
    return buffer.getvalue()


@pytest.fixture
def root_with_truncated_jpeg(tmp_path):
    make_cub(tmp_path, num_classes=4, shuffle=False)
    truncated = tmp_path / "CUB_200_2011" / "images" / "003.Bird_3" / "Bird_3_0.jpg"
    jpeg = encoded("JPEG")
    truncated.write_bytes(jpeg[: len(jpeg) // 2])  # a whole header, half the body
    return tmp_path, str(truncated)


def test_a_truncated_jpeg_is_skipped_with_the_warning(root_with_truncated_jpeg):
    root, truncated = root_with_truncated_jpeg
    with pytest.warns(RuntimeWarning) as caught:
        dataset = CUB(root, split="train")
    assert [str(w.message) for w in caught] == [f"skipping 1 unreadable image(s): {truncated}"]
    assert truncated not in dataset.paths
    assert len(dataset) == sum(1 + c % 3 for c in range(1, 5)) - 1
    folders = [int(p.split("/")[-2][:3]) for p in dataset.paths]
    np.testing.assert_array_equal(dataset.labels, folders)
    assert folders.count(3) == 0  # class 3 had the one image


def test_a_truncated_jpeg_stops_on_bad_image_error(root_with_truncated_jpeg):
    root, truncated = root_with_truncated_jpeg
    with pytest.raises(DatasetError) as error:
        CUB(root, on_bad_image="error")
    assert str(error.value).startswith(f"1 image(s) cannot be read: {truncated}; ")


JPEG = encoded("JPEG")
PNG = encoded("PNG", size=(60, 40))


@pytest.mark.parametrize(
    ("content", "readable"),
    [
        (JPEG, True),
        (JPEG + b"\x00" * 100, True),  # zero padding after the end marker
        (JPEG + b"\x00" * (3 * TAIL_BYTES), True),  # padding past the tail read: decoded
        (JPEG + b"camera trailer" * 200, True),  # data after the image: decoded, loads fine
        (JPEG[:-2], False),  # only the end marker cut off
        (JPEG[: len(JPEG) // 2] + b"\x00" * 100, False),  # zeros do not hide a truncation
        (PNG, True),
        (PNG[: len(PNG) // 2], False),
        (b"", False),
    ],
    ids=[
        "jpeg",
        "jpeg+zeros",
        "jpeg+long-zeros",
        "jpeg+trailer",
        "jpeg-eoi",
        "half-jpeg+zeros",
        "png",
        "half-png",
        "empty",
    ],
)
def test_the_check_reads_header_and_end(tmp_path, content, readable):
    path = tmp_path / "image"
    path.write_bytes(content)
    assert image_is_readable(str(path)) is readable


def test_a_complete_jpeg_is_accepted_without_decoding(tmp_path, monkeypatch):
    path = tmp_path / "image.jpg"
    path.write_bytes(JPEG + b"\x00" * 10)

    def no_decoding(image):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert image_is_readable(str(path)) is True


def test_an_image_broken_after_construction_names_its_path(tmp_path):
    make_cub(tmp_path, num_classes=2, shuffle=False)
    dataset = CUB(tmp_path, split="train")
    first, second = Path(dataset.paths[0]), Path(dataset.paths[1])
    first.write_bytes(JPEG[: len(JPEG) // 2])
    with pytest.raises(CorruptImageError) as error:
        dataset[0]
    assert isinstance(error.value, OSError) and isinstance(error.value, DatasetError)
    assert str(error.value).startswith(f"cannot load image {first} (image file is truncated")
    assert "replace or delete it" in str(error.value)
    assert "on_bad_image=skip" in str(error.value)
    second.unlink()
    with pytest.raises(DatasetNotFoundError) as error:
        dataset[1]
    assert isinstance(error.value, FileNotFoundError)
    assert str(error.value).startswith(f"image {second} is missing: restore it")
    assert dataset[2][1] == 2  # the others still load


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
