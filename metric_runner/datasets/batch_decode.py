"""Decoding a whole batch on the run's device instead of in the DataLoader's workers.

The workers only read each file's bytes (`EncodedImages`, batched by `collate_encoded`); the
main process decodes the batch's JPEGs with one `torchvision.io.decode_jpeg` call on the device
(nvJPEG on a GPU, which frees the CPU cores that bound an epoch) and runs the transform there
(`BatchDecoder`). The three plug into PML's trainer and tester arguments — dataset,
`collate_fn`, `data_and_label_getter` — so nothing else changes. On a CPU device the same code
runs on the CPU, which is what the tests exercise.
"""

import os
import warnings

import torch
from torch.utils.data import Dataset

from .base_dataset import missing_image
from .image_pipeline import JPEG_MAGIC, ImageFiles, ImageTransform, read_image

DECODE_MODES = ("cpu", "gpu", "auto")


def check_decode_mode(decode: str) -> None:
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, got {decode!r}")


def decodes_on_device(decode: str, device: torch.device | str) -> bool:
    """Whether `decode` ("cpu": in the workers; "gpu": batches on the run's device; "auto":
    "gpu" on CUDA runs, else "cpu") asks for batch decoding on `device`."""
    check_decode_mode(decode)
    return decode == "gpu" or (decode == "auto" and torch.device(device).type == "cuda")


class EncodedImages(Dataset):
    """The images of an ImageFiles as (file bytes uint8 [L], label, path): all a worker does.
    `is_query` and `is_gallery` are the split's (In-Shop's and OML CSVs' test splits mark their
    queries and gallery; testers read them)."""

    def __init__(self, images: ImageFiles):
        if getattr(images, "boxes", None) is not None:
            # The batch decoder would need each image's box; the workers' path crops them.
            raise ValueError(
                "this dataset crops its images to bounding boxes (the CSV's x_1, x_2, y_1, y_2), "
                "which batch decoding does not do; use dataset.decode=cpu"
            )
        self.paths = images.paths
        self.labels = images.labels
        self.is_query = getattr(images, "is_query", None)
        self.is_gallery = getattr(images, "is_gallery", None)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return file_bytes(self.paths[index]), self.labels[index], self.paths[index]


def file_bytes(path):
    """The file's bytes as a uint8 tensor in ordinary memory. (torchvision.io.read_file's
    tensors cannot leave a worker process: sharing their storage fails with EBADF.)"""
    try:
        with open(path, "rb") as file:
            data = bytearray(os.fstat(file.fileno()).st_size)
            file.readinto(data)
    except FileNotFoundError as error:
        raise missing_image(path) from error
    return torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


def collate_encoded(items):
    """A batch of EncodedImages items: (list of byte tensors, labels [B] or [B, levels], paths).
    The byte strings differ in length, so they stay a list, as decode_jpeg takes them."""
    data, labels, paths = zip(*items)
    return list(data), torch.stack(labels), list(paths)


class BatchDecoder:
    """data_and_label_getter for trainers and testers: a collate_encoded batch -> (transformed
    images [B, 3, H, W] on `device`, labels). `transform` is the split's ImageTransform (the same
    steps the workers would have run, so both paths give the same images)."""

    def __init__(self, transform: ImageTransform, device: torch.device | str = "cpu"):
        self.transform = transform
        self.device = torch.device(device)

    def __call__(self, batch):
        data, labels, paths = batch
        images = decode_batch(data, paths, self.device)
        # The images differ in size until cropped, so the geometric steps run one image at a
        # time (on the device); normalisation then runs once on the stacked batch.
        cropped = torch.stack([self.transform.geometric(image) for image in images])
        return self.transform.normalise(cropped), labels


def decode_batch(data, paths, device):
    """uint8 RGB tensors (3, H, W) on `device`: the JPEGs in one decode_jpeg call there, other
    formats (PNG, BMP, ...) decoded on the CPU and moved. A batch the device cannot decode (a
    corrupt file, a JPEG flavour nvJPEG lacks) is decoded image by image on the CPU instead,
    which names a corrupt file."""
    from torchvision.io import ImageReadMode, decode_jpeg

    is_jpeg = [bytes(item[:2].numpy()) == JPEG_MAGIC for item in data]
    jpegs = [item for item, jpeg in zip(data, is_jpeg) if jpeg]
    try:
        # torchvision 0.29 deprecates its decoders for TorchCodec (see read_image).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = (
                iter(decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device)) if jpegs else None
            )
    except RuntimeError:
        return [read_image(path).to(device) for path in paths]
    return [
        next(decoded) if jpeg else read_image(path).to(device) for jpeg, path in zip(is_jpeg, paths)
    ]
