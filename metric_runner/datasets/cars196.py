"""Cars196 (Krause et al. 2013): 16,185 images of 196 car models, in Kaggle's folder layout."""

import csv

import numpy as np

from .base_dataset import BaseDataset, DatasetError
from .download import Resource

NUM_TRAIN_CLASSES = 98
IMAGE_FOLDERS = {"train": "car_data/car_data/train", "test": "car_data/car_data/test"}


class Cars196(BaseDataset):
    """Zero-shot split by class id over the official train and test images together: `train`
    is classes 1-98, `test` classes 99-196 (98 classes each). Labels are the class ids 1-196, as
    in PML; images are in the order of anno_train.csv, then anno_test.csv."""

    LAYOUT = (
        "names.csv (line i names class i)",
        "anno_train.csv and anno_test.csv (<file>,<x1>,<y1>,<x2>,<y2>,<class id 1-196>)",
        "car_data/car_data/{train,test}/<class name, '/' as '-'>/<file>.jpg",
    )
    REQUIRED = ("names.csv", "anno_train.csv", "anno_test.csv", "car_data/car_data")
    DOWNLOAD_URL = "https://www.kaggle.com/api/v1/datasets/download/jutrera/stanford-car-dataset-by-classes-folder"

    def resources(self):
        # Kaggle publishes no checksum: the archive is checked for completeness and by unzipping.
        archive = "stanford-car-dataset-by-classes-folder.zip"
        return (Resource(self.DOWNLOAD_URL, None, archive, creates="car_data"),)

    def load(self, split):
        with open(self.path("names.csv"), newline="") as file:
            names = [row[0] for row in csv.reader(file) if row]
        paths, labels = [], []
        for part, folder in IMAGE_FOLDERS.items():
            for file_name, class_id in self.annotations(part, len(names)):
                class_folder = names[class_id - 1].replace("/", "-")
                paths.append(str(self.path(folder, class_folder, file_name)))
                labels.append(class_id)
        labels = np.array(labels, dtype=np.int64)
        keep = {
            "train": labels <= NUM_TRAIN_CLASSES,
            "test": labels > NUM_TRAIN_CLASSES,
            "train+test": np.ones(len(labels), dtype=bool),
        }[split]
        return [p for p, k in zip(paths, keep) if k], labels[keep]

    def annotations(self, part, num_classes):
        path = self.path(f"anno_{part}.csv")
        with open(path, newline="") as file:
            for number, row in enumerate(csv.reader(file), start=1):
                if not row:
                    continue
                try:
                    class_id = int(row[-1])
                except ValueError:
                    raise DatasetError(
                        f"{path}, line {number}: the last column must be a class id, got {row!r}"
                    ) from None
                if not 1 <= class_id <= num_classes:
                    raise DatasetError(
                        f"{path}, line {number}: class id {class_id} is not in names.csv "
                        f"(1-{num_classes})"
                    )
                yield row[0], class_id
