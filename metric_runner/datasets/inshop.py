"""In-Shop Clothes Retrieval (Liu et al. 2016, DeepFashion): 52,712 images of 7,982 items."""

import numpy as np

from .base_dataset import BaseDataset, DatasetError, DatasetNotFoundError

PARTITION_FILES = ("Eval/list_eval_partition.txt", "list_eval_partition.txt")
PARTS = ("train", "query", "gallery")


class InShop(BaseDataset):
    """The official partition (list_eval_partition.txt): `train` (3,997 items, 25,882 images),
    `query` (14,218 images) and `gallery` (12,612 images) of the other 3,985 items. The test
    protocol retrieves each query among the gallery, not within one split: `query+gallery`
    holds both, with `is_query` marking the queries. Labels are the item numbers (id_00000123
    -> 123)."""

    SPLITS = ("train", "query", "gallery", "query+gallery", "train+query+gallery")
    LAYOUT = (
        "Eval/list_eval_partition.txt (or list_eval_partition.txt): a count line, the header "
        "'image_name item_id evaluation_status', then '<img/...jpg> id_<number> train|query|gallery'",
        "img/<WOMEN|MEN>/<category>/id_<number>/<image>.jpg",
    )
    REQUIRED = ("img",)
    PER_SAMPLE = ("is_query",)
    MANUAL_DOWNLOAD = (
        "download img.zip and Eval/list_eval_partition.txt of the In-shop Clothes Retrieval "
        "Benchmark from https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html "
        "(Google Drive, no published checksum) and extract them into root"
    )

    def __init__(
        self,
        root,
        split="train",
        transform=None,
        target_transform=None,
        download=False,
        on_bad_image="skip",
    ):
        super().__init__(root, split, transform, target_transform, download, on_bad_image)

    @classmethod
    def zero_shot_parts(cls, root, options):
        return {"train": "train", "test": "query+gallery"}

    def partition_file(self):
        for name in PARTITION_FILES:
            if self.path(name).is_file():
                return self.path(name)
        raise DatasetNotFoundError(
            self.not_found_message(f"neither {' nor '.join(PARTITION_FILES)} is in {self.root!r}")
        )

    def check_complete(self):
        super().check_complete()
        self.partition_file()

    def load(self, split):
        rows = self.read_partition()
        wanted = split.split("+")
        # Parts in the order the split names them, so `query+gallery` starts with the queries.
        chosen = [row for part in wanted for row in rows if row[2] == part]
        self.is_query = np.array([row[2] == "query" for row in chosen], dtype=bool)
        labels = np.array([row[1] for row in chosen], dtype=np.int64)
        return [str(self.path(row[0])) for row in chosen], labels

    def read_partition(self):
        path = self.partition_file()
        rows = []
        with open(path) as file:
            lines = file.read().splitlines()
        for number, line in enumerate(lines[2:], start=3):  # a count line, then the header
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[2] not in PARTS or not parts[1].startswith("id_"):
                raise DatasetError(
                    f"{path}, line {number}: expected '<image> id_<number> train|query|gallery', "
                    f"got {line!r}"
                )
            rows.append((parts[0], int(parts[1][3:]), parts[2]))
        return rows
