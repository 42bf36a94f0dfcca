"""Images per second of the runner's image pipeline against a bare torchvision ImageFolder.

Generates a folder of JPEGs (CUB-like sizes) and reads it once per loader, with the same
number of workers, the same batch size and the same transforms (the standard train pipeline:
Resize 256, RandomResizedCrop 224 scale (0.16, 1), flip, ImageNet normalisation, or the eval
one: Resize 256, CenterCrop 224):

- ours: metric_runner's ImageFiles (torchvision.io decoding to uint8 tensors, transforms v2 on
  tensors) through the runner's make_loader (persistent workers, pinned memory on CUDA);
- reference: torchvision.datasets.ImageFolder (PIL decoding, PIL transforms, ToTensor) through
  a plain DataLoader.

    python scripts/bench_data.py                          # 2,000 images, 4 workers
    python scripts/bench_data.py --images 200 --workers 0  # a quick check
    python scripts/bench_data.py --out results/data        # + data.json and data.md
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_harness import Table, add_out_argument, seconds, write_results
from PIL import Image
from torch.utils.data import DataLoader, SequentialSampler

from metric_runner.datasets.image_pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFiles,
    image_transform,
)
from metric_runner.runner.data import make_loader

NUM_CLASSES = 20


def make_jpeg_folder(root, num_images, seed=0):
    """num_images JPEGs of 500x375 or 375x500 (smooth noise, so they compress like photos)."""
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for index in range(num_images):
        label = index % NUM_CLASSES
        shape = (375, 500) if index % 3 else (500, 375)
        coarse = rng.integers(0, 256, (shape[0] // 25, shape[1] // 25, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(shape[::-1], Image.BILINEAR)
        path = root / f"class_{label:02d}" / f"{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90)
        paths.append(str(path))
        labels.append(label)
    return paths, labels


def reference_transform(train):
    from torchvision import transforms

    steps = [transforms.Resize(256)]
    if train:
        steps += [
            transforms.RandomResizedCrop(224, scale=(0.16, 1.0), ratio=(3 / 4, 4 / 3)),
            transforms.RandomHorizontalFlip(),
        ]
    else:
        steps.append(transforms.CenterCrop(224))
    return transforms.Compose(
        [*steps, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def images_per_second(loader, device):
    """Images/s over one pass, the first batch (worker start-up) excluded."""
    batches = iter(loader)
    first, _ = next(batches)
    count = 0

    def read_the_rest():
        nonlocal count
        for images, _ in batches:
            images = images.to(device, non_blocking=True)
            count += len(images)

    elapsed = seconds(read_the_rest, device)
    return count / elapsed, len(first)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    add_out_argument(parser)
    arguments = parser.parse_args()
    from torchvision.datasets import ImageFolder

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pin = device.type == "cuda"
    print(
        f"{arguments.images} JPEGs, {arguments.workers} workers, batch {arguments.batch_size}, "
        f"device {device}, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as folder:
        paths, labels = make_jpeg_folder(Path(folder), arguments.images)
        table = Table(
            "images per second",
            ["pipeline", "ours (img/s)", "torchvision ImageFolder (img/s)", "ratio"],
        )
        speeds = {}
        for train in (True, False):
            torch.manual_seed(0)
            ours = ImageFiles(paths, labels, image_transform(train))
            reference = ImageFolder(folder, transform=reference_transform(train))
            our_loader = make_loader(
                ours, arguments.batch_size, SequentialSampler(ours), arguments.workers, pin
            )
            reference_loader = DataLoader(
                reference,
                batch_size=arguments.batch_size,
                num_workers=arguments.workers,
                pin_memory=pin,
            )
            our_speed, _ = images_per_second(our_loader, device)
            reference_speed, _ = images_per_second(reference_loader, device)
            name = "train" if train else "eval"
            ratio = f"{our_speed / reference_speed:.2f}x"
            table.add(name, f"{our_speed:.0f}", f"{reference_speed:.0f}", ratio)
            speeds[name] = {
                "ours_images_per_s": our_speed,
                "reference_images_per_s": reference_speed,
            }
    print(table.markdown())
    write_results(arguments.out, "bench_data", [table], speeds, device=device)


if __name__ == "__main__":
    main()
