"""Your own images, one sub-folder per class (like torchvision's ImageFolder)."""

from pathlib import Path

import numpy as np

from .base_dataset import BaseDataset, DatasetNotFoundError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolder(BaseDataset):
    """Every image under `root/<class>/` (any depth), labelled by its class folder's index in
    sorted order (`classes`). The folder is one split, train+test: `ZeroShotSplit` divides its
    classes into train and test."""

    SPLITS = ("train+test",)
    LAYOUT = ("one sub-folder of images per class (root/<class>/<image>.jpg)",)

    @classmethod
    def zero_shot_parts(cls, root, options):
        return None

    def check_complete(self):
        super().check_complete()
        self.class_images = find_class_images(Path(self.root))
        if not self.class_images:
            raise DatasetNotFoundError(
                self.not_found_message(
                    f"{self.root!r} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)})"
                )
            )

    def load(self, split):
        self.classes = list(self.class_images)
        paths = [str(p) for images in self.class_images.values() for p in images]
        counts = [len(images) for images in self.class_images.values()]
        return paths, np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def find_class_images(root):
    """{class folder name: sorted image paths}, classes in sorted order, empty ones left out."""
    class_images = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if images:
            class_images[folder.name] = images
    return class_images
