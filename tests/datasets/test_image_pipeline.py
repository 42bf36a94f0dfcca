"""The fast image path: torchvision decoding (PIL only as the fallback) and tensor transforms."""

import numpy as np
import pytest
import torch
from PIL import Image

from metric_runner.datasets.base_dataset import DatasetError
from metric_runner.datasets.image_pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_transform,
    read_image,
)


def pil_pixels(path):
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


@pytest.mark.parametrize(
    ("suffix", "mode", "tolerance"),
    [(".jpg", "RGB", 2), (".jpg", "L", 2), (".png", "RGB", 0), (".bmp", "RGB", 0)],
)
def test_decoded_pixels_match_pil(tmp_path, suffix, mode, tolerance):
    rng = np.random.default_rng(0)
    shape = (20, 30, 3) if mode == "RGB" else (20, 30)
    path = tmp_path / f"image{suffix}"
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    image = read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 20, 30)
    assert (image.int() - pil_pixels(path).int()).abs().max() <= tolerance


def test_corrupt_image_names_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DatasetError, match=f"cannot load image {path}.*corrupt"):
        read_image(path)


def test_eval_transform_resizes_crops_and_normalises():
    flat = torch.tensor([200, 100, 50], dtype=torch.uint8).view(3, 1, 1).expand(3, 40, 60)
    out = image_transform(False, crop_size=16, resize=20)(flat.clone())
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    expected = (torch.tensor([200, 100, 50]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(
        IMAGENET_STD
    )
    torch.testing.assert_close(out, expected.view(3, 1, 1).expand(3, 16, 16), atol=1e-5, rtol=0)


def test_train_transform_crops_and_flips():
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[:, :, 16:] = 255  # right half white
    whole_and_flipped = image_transform(
        True, crop_size=8, resize=32, scale=(1, 1), ratio=(1, 1), flip=1.0
    )
    out = whole_and_flipped(image)
    assert out.shape == (3, 8, 8)
    assert (out[:, :, :4] > out[:, :, 4:]).all()  # white is on the left now
    torch.manual_seed(0)
    crops = [image_transform(True, crop_size=8, resize=32)(image) for _ in range(4)]
    assert not all(torch.equal(crops[0], c) for c in crops[1:])  # random crops differ


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown setting\\(s\\) size; valid: crop_size"):
        image_transform(True, size=3)
    with pytest.raises(ValueError, match="resize \\(20\\) must be at least crop_size \\(32\\)"):
        image_transform(False, crop_size=32, resize=20)
