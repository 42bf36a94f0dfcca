"""iNaturalist 2018 (Van Horn et al. 2018) with the zero-shot split of Brown et al. 2020
(Smooth-AP): 5,690 training and 2,452 test species."""

import json

from .base_dataset import BaseDataset, DatasetError, HierarchicalLabels
from .download import Resource

SPLIT_FOLDER = "Inat_dataset_splits"
SPLIT_FILES = {
    "train": f"{SPLIT_FOLDER}/Inaturalist_train_set1.txt",
    "test": f"{SPLIT_FOLDER}/Inaturalist_test_set1.txt",
}
ANNOTATIONS = ("train2018.json", "val2018.json")
TAXONOMY_LEVELS = ("supercategory", "kingdom", "phylum", "class", "order", "family", "genus")
S3 = "https://ml-inat-competition-datasets.s3.amazonaws.com/2018"
# The competition's published MD5s; the split files (Smooth-AP's Google Drive) have none.
IMAGES_MD5 = "b1c6952ce38f31868cc50ea72d066cc3"
TRAIN_ANN_MD5 = "bfa29d89d629cbf04d826a720c0a68b0"
VAL_ANN_MD5 = "f2ed8bfe3e9901cdefceb4e53cd3775d"


class INaturalist2018(HierarchicalLabels, BaseDataset):
    """`train` / `test` are the images listed in the split files, in their order; labels are
    the species (category) ids of the competition's annotations, as in PML. With
    `hierarchical=True` labels are [N, 2]: (species id, id of its `super_level` taxon), the
    taxa numbered in sorted order of their names."""

    LAYOUT = (
        "train_val2018/<supercategory>/<category id>/<image>.jpg",
        "train2018.json and val2018.json (the competition's annotations)",
        f"{SPLIT_FILES['train']} and {SPLIT_FILES['test']} (one image path per line, relative to root)",
    )
    REQUIRED = ("train_val2018", *ANNOTATIONS, *SPLIT_FILES.values())
    IMG_DOWNLOAD_URL = f"{S3}/train_val2018.tar.gz"
    TRAIN_ANN_URL = f"{S3}/train2018.json.tar.gz"
    VAL_ANN_URL = f"{S3}/val2018.json.tar.gz"
    SPLITS_URL = "https://drive.google.com/uc?id=1sXfkBTFDrRU3__-NUs1qBP3sf_0uMB98"

    def __init__(
        self,
        root,
        split="train+test",
        transform=None,
        target_transform=None,
        download=False,
        on_bad_image="skip",
        hierarchical=False,
        super_level="supercategory",
    ):
        if super_level not in TAXONOMY_LEVELS:
            raise DatasetError(
                f"super_level must be one of {', '.join(TAXONOMY_LEVELS)}, got {super_level!r}"
            )
        self.super_level = super_level
        super().__init__(
            root, split, transform, target_transform, download, on_bad_image, hierarchical
        )

    def resources(self):
        return (
            Resource(
                self.IMG_DOWNLOAD_URL, IMAGES_MD5, "train_val2018.tar.gz", creates="train_val2018"
            ),
            Resource(
                self.TRAIN_ANN_URL, TRAIN_ANN_MD5, "train2018.json.tar.gz", creates=ANNOTATIONS[0]
            ),
            Resource(self.VAL_ANN_URL, VAL_ANN_MD5, "val2018.json.tar.gz", creates=ANNOTATIONS[1]),
            Resource(self.SPLITS_URL, None, f"{SPLIT_FOLDER}.zip", creates=SPLIT_FOLDER),
        )

    def load(self, split):
        category_of, taxon_of = self.read_annotations()
        relative_paths = []
        for part in split.split("+"):
            with open(self.path(SPLIT_FILES[part])) as file:
                relative_paths += [line.strip() for line in file if line.strip()]
        unknown = [p for p in relative_paths if p not in category_of]
        if unknown:
            raise DatasetError(
                f"{len(unknown)} image(s) of the {split} split file(s) are in neither "
                f"{' nor '.join(ANNOTATIONS)}, e.g. {unknown[0]!r}"
            )
        species = [category_of[p] for p in relative_paths]
        paths = [str(self.path(p)) for p in relative_paths]
        return paths, self.labels_at_levels(species, lambda: [taxon_of[s] for s in species])

    def read_annotations(self):
        """{image path: category id} over both annotation files, and {category id: taxon id}."""
        category_of, taxon_name = {}, {}
        for name in ANNOTATIONS:
            with open(self.path(name)) as file:
                annotations = json.load(file)
            file_of = {image["id"]: image["file_name"] for image in annotations["images"]}
            for annotation in annotations["annotations"]:
                category_of[file_of[annotation["image_id"]]] = annotation["category_id"]
            for category in annotations["categories"]:
                taxon_name[category["id"]] = category.get(self.super_level, "")
        taxon_ids = {name: i for i, name in enumerate(sorted(set(taxon_name.values())))}
        return category_of, {c: taxon_ids[name] for c, name in taxon_name.items()}
