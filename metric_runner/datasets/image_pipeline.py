"""The fast image path of the runner: torchvision decoding to uint8 tensors, then the train or
eval transform on tensors (no PIL round trip), normalised with the ImageNet statistics."""

import warnings

import torch
from torch.utils.data import Dataset

from .base_dataset import load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The standard deep-metric-learning pipeline (MLRC, Musgrave et al. 2020).
TRANSFORM_DEFAULTS = {
    "crop_size": 224,
    "resize": 256,
    "scale": (0.16, 1.0),
    "ratio": (3 / 4, 4 / 3),
    "flip": 0.5,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
}
JPEG_MAGIC = b"\xff\xd8"


def read_image(path):
    """The image at `path` as a uint8 RGB tensor (3, H, W): JPEGs through decode_jpeg, PNG,
    GIF and WebP through decode_image, anything else through PIL. A file deleted since the
    dataset was built raises DatasetNotFoundError, one that no decoder reads CorruptImageError,
    each naming the file (base_dataset.load_image's errors)."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

    # torchvision 0.29 deprecates its decoders in favour of TorchCodec, warning on every call;
    # they are still the fastest decoder installed with torch, so the warning is silenced here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            data = read_file(str(path))
        except RuntimeError:  # how torchvision reports a missing or unreadable file
            return decoded_by_pil(path)
        try:
            if bytes(data[:2].numpy()) == JPEG_MAGIC:
                return decode_jpeg(data, mode=ImageReadMode.RGB)
            return decode_image(data, mode=ImageReadMode.RGB)
        except RuntimeError:
            pass  # a format torchvision does not decode (BMP, TIFF, PPM), or a corrupt file
    return decoded_by_pil(path)


def decoded_by_pil(path):
    """PIL's decoding, whose failures load_image turns into DatasetNotFoundError or
    CorruptImageError naming the file and the fix."""
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(load_image(path))


class ImageTransform:
    """A uint8 image tensor through `geometric` (resize, crop, flip: uint8 out) and then
    `normalise` (float, mean/std). The two are kept apart so a batch decoder can run the
    geometric steps per image and normalise the stacked batch in one call."""

    def __init__(self, geometric, normalise):
        self.geometric = geometric
        self.normalise = normalise

    def __call__(self, image):
        return self.normalise(self.geometric(image))


def image_transform(train, **settings):
    """The train (Resize, RandomResizedCrop, flip) or eval (Resize, CenterCrop) transform of
    uint8 image tensors, ending in float normalisation; `settings` override TRANSFORM_DEFAULTS."""
    from torchvision.transforms import v2  # imported here: it takes seconds

    unknown = set(settings) - set(TRANSFORM_DEFAULTS)
    if unknown:
        raise ValueError(
            f"transform: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(TRANSFORM_DEFAULTS)}"
        )
    s = {**TRANSFORM_DEFAULTS, **settings}
    if s["resize"] < s["crop_size"]:
        raise ValueError(
            f"transform: resize ({s['resize']}) must be at least crop_size ({s['crop_size']})"
        )
    steps = [v2.Resize(s["resize"], antialias=True)]
    if train:
        steps += [
            v2.RandomResizedCrop(
                s["crop_size"], scale=tuple(s["scale"]), ratio=tuple(s["ratio"]), antialias=True
            ),
            v2.RandomHorizontalFlip(s["flip"]),
        ]
    else:
        steps.append(v2.CenterCrop(s["crop_size"]))
    normalise = v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(s["mean"], s["std"])]
    )
    return ImageTransform(v2.Compose(steps), normalise)


class ImageFiles(Dataset):
    """(transformed image tensor, label) for each path; `labels` a tensor [N] or [N, levels]."""

    def __init__(self, paths, labels, transform):
        self.paths = list(paths)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return self.transform(read_image(self.paths[index])), self.labels[index]
