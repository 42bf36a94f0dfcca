"""ImageFolder: one sub-folder per class, labelled by sorted folder order."""

import pytest
from PIL import Image

from metric_runner.datasets import DatasetError, ImageFolder


@pytest.fixture
def root(tmp_path):
    """Three classes (one nested deeper, one empty folder), images as PNG and JPEG."""
    for label, name in enumerate(("cat", "dog", "owl")):
        folder = tmp_path / name / ("deeper" if name == "owl" else "")
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(label + 1):
            Image.new("RGB", (6, 4), (80 * label, 9 * index, 0)).save(folder / f"{index}.png")
    Image.new("RGB", (6, 4)).save(tmp_path / "dog" / "extra.JPG")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a class folder")
    return tmp_path


def test_classes_are_sorted_folders_with_images(root):
    dataset = ImageFolder(root)
    assert dataset.classes == ["cat", "dog", "owl"]
    assert dataset.labels.tolist() == [0, 1, 1, 1, 2, 2, 2]
    image, label = dataset[4]
    assert label == 2 and image.getpixel((0, 0)) == (160, 0, 0)


def test_missing_folder_names_the_path_and_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        ImageFolder(tmp_path / "nope")
    assert f"'{tmp_path / 'nope'}' is not a folder" in str(error.value)
    assert "one sub-folder of images per class" in str(error.value)


def test_empty_folder_and_other_splits(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        ImageFolder(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "cats" / "a.png")
    with pytest.raises(DatasetError, match="supported splits are: train\\+test"):
        ImageFolder(tmp_path, split="train")
