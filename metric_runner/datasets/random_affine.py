import math

import torch
from torch import nn
from torch.nn import functional as F


class RandomAffine(nn.Module):
    """A random rotation, zoom and shift per image of a batch (N, C, H, W), on tensors.

    Each image gets an angle in ±`degrees`, a zoom factor in 1 ± `scale` and a shift in
    ±`translate` of its width and height; pixels moved in from outside take the value `fill`
    (the background: -1 for the digits, which are scaled to [-1, 1]). It draws from torch's
    global generator, so runs stay reproducible from their seed.
    """

    def __init__(self, degrees=15.0, translate=0.125, scale=0.1, fill=0.0):
        super().__init__()
        for name, value, upper in (("translate", translate, 1), ("scale", scale, 1)):
            if not 0 <= value < upper:
                raise ValueError(f"{name} must be in [0, {upper}), got {value}")
        if degrees < 0:
            raise ValueError(f"degrees must be >= 0, got {degrees}")
        self.degrees, self.translate, self.scale, self.fill = degrees, translate, scale, fill

    def forward(self, images):
        if images.ndim != 4:
            raise ValueError(
                f"RandomAffine expects images (N, C, H, W), got shape {tuple(images.shape)}; "
                "vector inputs (dataset.as_images=false) cannot be rotated"
            )
        n = images.shape[0]
        options = {"device": images.device, "dtype": images.dtype}

        def uniform(*shape):  # in [-1, 1)
            return torch.rand(*shape, **options) * 2 - 1

        angle = uniform(n) * math.radians(self.degrees)
        zoom = 1 + uniform(n) * self.scale
        # affine_grid maps output to input coordinates in [-1, 1]: dividing by the zoom enlarges.
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        shift = uniform(n, 2) * 2 * self.translate  # the image spans 2 in grid coordinates
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        # grid_sample pads with zeros, so sample (images - fill) and add fill back.
        moved = F.grid_sample(images - self.fill, grid, align_corners=False)
        return moved + self.fill
