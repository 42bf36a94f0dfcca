import math

import pytest
import torch

from metric_runner.datasets import Digits, RandomAffine


def digit_images(count=6):
    return Digits("train").tensors[0][:count].double()


def test_without_rotation_zoom_or_shift_the_images_are_unchanged():
    images = digit_images()
    out = RandomAffine(degrees=0, translate=0, scale=0, fill=-1)(images)
    torch.testing.assert_close(out, images)


def largest_draws(monkeypatch):
    """torch.rand returns 1 everywhere: every image gets the largest angle, zoom and shift."""
    monkeypatch.setattr(torch, "rand", lambda *shape, **options: torch.ones(*shape, **options))


def test_a_right_angle_rotation_turns_the_image_by_ninety_degrees(monkeypatch):
    images = digit_images()
    largest_draws(monkeypatch)
    out = RandomAffine(degrees=90, translate=0, scale=0, fill=-1)(images)
    turned = [torch.rot90(images, k, dims=(2, 3)) for k in (1, -1)]
    assert any(torch.allclose(out, t, atol=1e-9) for t in turned)


def test_a_one_pixel_shift_moves_pixels_and_fills_the_border_with_the_background(monkeypatch):
    images = digit_images()
    largest_draws(monkeypatch)
    out = RandomAffine(degrees=0, translate=0.125, scale=0, fill=-1)(images)  # 1/8 of 8 px
    shifted = [torch.roll(images, (dy, dx), dims=(2, 3)) for dy in (1, -1) for dx in (1, -1)]
    matches = [
        s for s in shifted if torch.allclose(out[..., 1:-1, 1:-1], s[..., 1:-1, 1:-1], atol=1e-9)
    ]
    assert len(matches) == 1
    border = torch.cat([out[..., 0, :].flatten(), out[..., -1, :].flatten()])
    assert (border == -1).sum() >= 8 * images.shape[0]  # one full row moved in from outside


def test_draws_differ_per_image_and_follow_the_seed():
    images = digit_images().float().repeat(4, 1, 1, 1)
    augment = RandomAffine(degrees=15, translate=0.125, scale=0.1, fill=-1)
    torch.manual_seed(3)
    first = augment(images)
    torch.manual_seed(3)
    torch.testing.assert_close(augment(images), first, rtol=0, atol=0)
    assert not torch.allclose(first[:6], first[6:12])
    assert first.min() >= -1 - 1e-6 and first.max() <= 1 + 1e-6  # bilinear: no overshoot
    assert first.dtype == torch.float32


def test_bad_input_and_arguments_are_one_clear_error():
    with pytest.raises(ValueError, match=r"expects images \(N, C, H, W\).*as_images=false"):
        RandomAffine()(torch.zeros(4, 64))
    with pytest.raises(ValueError, match="degrees must be >= 0"):
        RandomAffine(degrees=-1)
    with pytest.raises(ValueError, match=r"scale must be in \[0, 1\)"):
        RandomAffine(scale=1.5)
    with pytest.raises(ValueError, match=r"translate must be in \[0, 1\)"):
        RandomAffine(translate=math.inf)
