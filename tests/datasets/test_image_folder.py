import pytest
import torch
from PIL import Image

from metric_runner.datasets import ImageFolder


@pytest.fixture
def root(tmp_path):
    """Six classes of five images, each image a flat color that encodes (class, index)."""
    for label in range(6):
        folder = tmp_path / f"class_{label}"
        folder.mkdir()
        for index in range(5):
            Image.new("RGB", (20, 16), (40 * label, 50 * index, 0)).save(folder / f"{index}.png")
    (tmp_path / "notes.txt").write_text("not a class folder")
    return tmp_path


def test_classes_split_zero_shot_with_a_held_out_val_part(root):
    train, val, test = (ImageFolder(root, split) for split in ("train", "val", "test"))
    assert train.classes == [f"class_{i}" for i in range(6)]
    assert sorted(set(train.labels.tolist())) == [0, 1, 2]
    assert sorted(set(val.labels.tolist())) == [0, 1, 2]
    assert sorted(set(test.labels.tolist())) == [3, 4, 5]
    assert (len(train), len(val), len(test)) == (12, 3, 15)  # 1 of 5 images per class is val
    assert not set(train.paths) & set(val.paths)


def test_images_are_resized_and_normalized(root):
    test = ImageFolder(root, "test", image_size=8)
    image, label = test[0]
    assert image.shape == (3, 8, 8) and label == 3
    red = (40 * 3 / 255 - 0.485) / 0.229  # flat color stays flat after resize and crop
    torch.testing.assert_close(image[0], torch.full((8, 8), red), atol=1e-2, rtol=0)


def test_missing_folder_names_the_path_and_the_layout(tmp_path):
    with pytest.raises(ValueError) as error:
        ImageFolder(tmp_path / "nope", "train")
    assert str(tmp_path / "nope") in str(error.value)
    assert "one sub-folder of images per class" in str(error.value)


def test_empty_folder_and_too_few_classes(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        ImageFolder(tmp_path, "train")
    for name in ("cats", "dogs", "owls"):
        (tmp_path / name).mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / name / "a.png")
    with pytest.raises(ValueError, match="has 3 classes.*each side needs at least 2"):
        ImageFolder(tmp_path, "train")
