"""CUB-200-2011 (Wah et al. 2011): 11,788 images of 200 bird species."""

import numpy as np

from .base_dataset import BaseDataset, DatasetError
from .download import Resource

FOLDER = "CUB_200_2011"
ARCHIVE_MD5 = "97eceeb196236b17998738112f37df78"  # published by CaltechDATA
NUM_TRAIN_CLASSES = 100


class CUB(BaseDataset):
    """Zero-shot split by class id: `train` is classes 1-100 (5,864 images), `test` classes
    101-200 (5,924 images). Labels are the dataset's class ids 1-200, as in PML; images are in
    the order of images.txt."""

    LAYOUT = (
        f"{FOLDER}/images.txt (<image id> <path under images/>)",
        f"{FOLDER}/image_class_labels.txt (<image id> <class id 1-200>)",
        f"{FOLDER}/images/<class folder>/<image>.jpg",
    )
    REQUIRED = (f"{FOLDER}/images.txt", f"{FOLDER}/image_class_labels.txt", f"{FOLDER}/images")
    DOWNLOAD_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"

    def resources(self):
        return (Resource(self.DOWNLOAD_URL, ARCHIVE_MD5, f"{FOLDER}.tgz", creates=FOLDER),)

    def load(self, split):
        image_ids, relative_paths = read_id_table(self.path(FOLDER, "images.txt"))
        labelled_ids, class_ids = read_id_table(self.path(FOLDER, "image_class_labels.txt"))
        class_of = dict(zip(labelled_ids, class_ids))
        unlabelled = [i for i in image_ids if i not in class_of]
        if unlabelled:
            raise DatasetError(
                f"{self.path(FOLDER, 'image_class_labels.txt')} has no class for image id(s) "
                f"{', '.join(unlabelled[:5])} of images.txt; the two files must list the same ids"
            )
        labels = np.array([int(class_of[i]) for i in image_ids], dtype=np.int64)
        keep = {
            "train": labels <= NUM_TRAIN_CLASSES,
            "test": labels > NUM_TRAIN_CLASSES,
            "train+test": np.ones(len(labels), dtype=bool),
        }[split]
        images = self.path(FOLDER, "images")
        paths = [str(images / p) for p, k in zip(relative_paths, keep) if k]
        return paths, labels[keep]


def read_id_table(path):
    """The two columns of a `<id> <value>` text file, as lists of strings."""
    ids, values = [], []
    with open(path) as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise DatasetError(f"{path}, line {number}: expected '<id> <value>', got {line!r}")
            ids.append(parts[0])
            values.append(parts[1].strip())
    return ids, values
