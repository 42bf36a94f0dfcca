"""Images per second of the runner's image pipeline against a bare torchvision ImageFolder.

Generates a folder of JPEGs (CUB-like sizes) and reads it once per loader, with the same
number of workers, the same batch size and the same transforms (the standard train pipeline:
Resize 256, RandomResizedCrop 224 scale (0.16, 1), flip, ImageNet normalisation, or the eval
one: Resize 256, CenterCrop 224):

- ours: metric_runner's ImageFiles (torchvision.io decoding to uint8 tensors, transforms v2 on
  tensors) through the runner's make_loader (persistent workers, pinned memory on CUDA);
- ours, batch-decoded: the same ImageFiles read as file bytes by the workers (EncodedImages,
  collate_encoded) and decoded batch by batch in the main process by BatchDecoder, as the runner's
  `decode: gpu` does: one decode_jpeg call per batch on the device (nvJPEG on CUDA; on a CPU
  device the main process decodes while the workers only read files), the transform there;
- reference: torchvision.datasets.ImageFolder (PIL decoding, PIL transforms, ToTensor) through
  a plain DataLoader.

Each loader reads the folder --repeats times, the loaders taking turns (the order reversed every
other round, so machine noise hits them alike); the table shows the median images/s.

    python scripts/bench_data.py                          # 2,000 images, 4 workers
    python scripts/bench_data.py --images 200 --workers 0  # a quick check
    python scripts/bench_data.py --out results/data        # + data.json and data.md
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_harness import Table, add_out_argument, seconds, write_results
from PIL import Image
from torch.utils.data import DataLoader, SequentialSampler

from metric_runner.datasets.batch_decode import BatchDecoder, EncodedImages, collate_encoded
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


def images_per_second(loader, images_on_device, device):
    """Images/s over one pass, the first batch (worker start-up, decoder set-up) excluded.
    `images_on_device(batch)` gives the batch's images on the device: a copy for the loaders
    that decode in their workers, the decoding itself for the batch-decoded one."""
    batches = iter(loader)
    images_on_device(next(batches))
    count = 0

    def read_the_rest():
        nonlocal count
        for batch in batches:
            count += len(images_on_device(batch))

    elapsed = seconds(read_the_rest, device)
    return count / elapsed


def copied_to(device):
    return lambda batch: batch[0].to(device, non_blocking=True)


def decoded_on(transform, device):
    decoder = BatchDecoder(transform, device)
    return lambda batch: decoder(batch)[0]


def loaders(folder, paths, labels, train, arguments, device):
    """{name: (loader, images_on_device)} for our loader, ours batch-decoded, and ImageFolder."""
    from torchvision.datasets import ImageFolder

    pin = device.type == "cuda"
    workers, batch_size = arguments.workers, arguments.batch_size
    ours = ImageFiles(paths, labels, image_transform(train))
    reference = ImageFolder(folder, transform=reference_transform(train))
    # Byte strings of different lengths: nothing to pin; the decoded images are made on the device.
    encoded_loader = DataLoader(
        EncodedImages(ours),
        batch_size=batch_size,
        sampler=SequentialSampler(ours),
        num_workers=workers,
        collate_fn=collate_encoded,
        persistent_workers=workers > 0,
    )
    return {
        "ours": (
            make_loader(ours, batch_size, SequentialSampler(ours), workers, pin),
            copied_to(device),
        ),
        "ours_decoded": (encoded_loader, decoded_on(ours.transform, device)),
        "reference": (
            DataLoader(reference, batch_size=batch_size, num_workers=workers, pin_memory=pin),
            copied_to(device),
        ),
    }


def median_speeds(named_loaders, repeats, device):
    """{name: median images/s} over `repeats` passes, the loaders taking turns."""
    speeds = {name: [] for name in named_loaders}
    names = list(named_loaders)
    for round_number in range(repeats):
        for name in names if round_number % 2 == 0 else names[::-1]:
            loader, images_on_device = named_loaders[name]
            speeds[name].append(images_per_second(loader, images_on_device, device))
    return {name: statistics.median(values) for name, values in speeds.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="passes per loader (median)")
    add_out_argument(parser)
    arguments = parser.parse_args()
    if arguments.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {arguments.repeats}")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    decoded_where = "on the device" if device.type == "cuda" else "in the main process"
    print(
        f"{arguments.images} JPEGs, {arguments.workers} workers, batch {arguments.batch_size}, "
        f"{arguments.repeats} passes each, device {device}, torch {torch.__version__}"
    )
    table = Table(
        "images per second (median of the passes)",
        [
            "pipeline",
            "ours (img/s)",
            f"ours, decoded {decoded_where} (img/s)",
            "torchvision ImageFolder (img/s)",
            "ours / ImageFolder",
            f"ours decoded {decoded_where} / ImageFolder",
        ],
    )
    speeds = {}
    with tempfile.TemporaryDirectory() as folder:
        paths, labels = make_jpeg_folder(Path(folder), arguments.images)
        for train in (True, False):
            torch.manual_seed(0)
            named_loaders = loaders(folder, paths, labels, train, arguments, device)
            median = median_speeds(named_loaders, arguments.repeats, device)
            name = "train" if train else "eval"
            table.add(
                name,
                f"{median['ours']:.0f}",
                f"{median['ours_decoded']:.0f}",
                f"{median['reference']:.0f}",
                f"{median['ours'] / median['reference']:.2f}x",
                f"{median['ours_decoded'] / median['reference']:.2f}x",
            )
            speeds[name] = {
                "ours_images_per_s": median["ours"],
                "ours_decoded_images_per_s": median["ours_decoded"],
                "decoded": decoded_where,
                "reference_images_per_s": median["reference"],
            }
    print(table.markdown())
    write_results(arguments.out, "bench_data", [table], speeds, device=device)


if __name__ == "__main__":
    main()
