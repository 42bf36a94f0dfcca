"""Stanford Online Products (Oh Song et al. 2016): 120,053 images of 22,634 products."""

import numpy as np

from .base_dataset import BaseDataset, DatasetError, HierarchicalLabels
from .download import Resource

FOLDER = "Stanford_Online_Products"
SPLIT_FILES = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}


class StanfordOnlineProducts(HierarchicalLabels, BaseDataset):
    """The official split: `train` is Ebay_train.txt (11,318 products, 59,551 images), `test`
    Ebay_test.txt (11,316 products, 60,502 images). Labels are the product (class) ids, as in
    PML; with `hierarchical=True` they are [N, 2]: (class id, super-class id 1-12), the shape
    HierarchicalSampler and WithSameParentLabelTester take."""

    LAYOUT = (
        f"{FOLDER}/Ebay_train.txt and {FOLDER}/Ebay_test.txt "
        "(header 'image_id class_id super_class_id path', then one line per image)",
        f"{FOLDER}/<super class>_final/<image>.JPG",
    )
    REQUIRED = (f"{FOLDER}/Ebay_train.txt", f"{FOLDER}/Ebay_test.txt")
    DOWNLOAD_URL = (
        "https://drive.usercontent.google.com/download?"
        "id=1TclrpQOF_ullUP99wk_gjGN8pKvtErG8&export=download&authuser=0&confirm=t"
    )

    def resources(self):
        # The archive has no published checksum: it is checked for completeness and by unzipping.
        return (Resource(self.DOWNLOAD_URL, None, f"{FOLDER}.zip", creates=FOLDER),)

    def load(self, split):
        paths, labels = [], []
        for part in split.split("+"):
            part_paths, part_labels = self.read_split_file(self.path(FOLDER, SPLIT_FILES[part]))
            paths += part_paths
            labels.append(part_labels)
        labels = np.concatenate(labels)
        return paths, self.labels_at_levels(labels[:, 0], lambda: labels[:, 1])

    def read_split_file(self, path):
        paths, labels = [], []
        with open(path) as file:
            next(file, None)  # header
            for number, line in enumerate(file, start=2):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 4:
                    raise DatasetError(
                        f"{path}, line {number}: expected 'image_id class_id super_class_id path', "
                        f"got {line!r}"
                    )
                labels.append((int(parts[1]), int(parts[2])))
                paths.append(str(self.path(FOLDER, parts[3])))
        return paths, np.array(labels, dtype=np.int64).reshape(-1, 2)
