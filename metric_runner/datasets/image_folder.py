from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT_HINT = "one sub-folder of images per class (root/<class>/<image>.jpg)"


class ImageFolder(Dataset):
    """Images in a folder per class (like torchvision's ImageFolder), split zero-shot.

    Classes are sorted by folder name; the first `train_class_fraction` of them form `train`,
    minus a `val_fraction` of each class's images held out as `val`; the other classes form
    `test`. Train images get a random resized crop and flip, val/test a resize and center crop
    to `image_size`; all are normalized with the ImageNet statistics.
    """

    def __init__(self, root, split, image_size=224, train_class_fraction=0.5, val_fraction=0.2):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        class_images = find_class_images(Path(root).expanduser())
        num_train = round(len(class_images) * train_class_fraction)
        if num_train < 2 or len(class_images) - num_train < 2:
            raise ValueError(
                f"dataset.root {str(root)!r} has {len(class_images)} classes; with "
                f"train_class_fraction={train_class_fraction} that leaves {num_train} train and "
                f"{len(class_images) - num_train} test classes, and each side needs at least 2"
            )
        self.classes = list(class_images)
        self.paths, labels = split_paths(class_images, num_train, split, val_fraction)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.transform = image_transform(split, image_size)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


def find_class_images(root):
    if not root.is_dir():
        raise ValueError(
            f"dataset.root {str(root)!r} is not a folder; point dataset.root at a folder with "
            f"{LAYOUT_HINT}, or use dataset=digits"
        )
    class_images = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if images:
            class_images[folder.name] = images
    if not class_images:
        raise ValueError(
            f"dataset.root {str(root)!r} holds no images; it needs {LAYOUT_HINT} "
            f"with extensions {', '.join(IMAGE_EXTENSIONS)}"
        )
    return class_images


def split_paths(class_images, num_train, split, val_fraction):
    paths, labels = [], []
    rng = np.random.default_rng(0)
    for label, images in enumerate(class_images.values()):
        is_train_class = label < num_train
        if split == "test":
            chosen = [] if is_train_class else images
        elif not is_train_class:
            chosen = []
        else:
            order = rng.permutation(len(images))
            num_val = round(len(images) * val_fraction)
            picked = order[:num_val] if split == "val" else order[num_val:]
            chosen = [images[i] for i in sorted(picked)]
        paths += chosen
        labels += [label] * len(chosen)
    return paths, labels


def image_transform(split, image_size):
    from torchvision import transforms  # imported here: it takes seconds, digits runs skip it

    if split == "train":
        resize = [
            transforms.RandomResizedCrop(image_size, scale=(0.5, 1.0)),
            transforms.RandomHorizontalFlip(),
        ]
    else:
        resize = [transforms.Resize(round(image_size * 8 / 7)), transforms.CenterCrop(image_size)]
    return transforms.Compose(
        resize + [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
