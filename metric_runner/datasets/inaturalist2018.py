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
# Optional: the competition's un-obfuscated taxonomy (a list of categories, each with `id` and
# the taxonomy levels), released after the annotation files; it replaces their categories.
CATEGORIES_FILE = "categories.json"
S3 = "https://ml-inat-competition-datasets.s3.amazonaws.com/2018"
CATEGORIES_URL = f"{S3}/categories.json.tar.gz"
# The competition's published MD5s; the split files (Smooth-AP's Google Drive) have none.
IMAGES_MD5 = "b1c6952ce38f31868cc50ea72d066cc3"
TRAIN_ANN_MD5 = "bfa29d89d629cbf04d826a720c0a68b0"
VAL_ANN_MD5 = "f2ed8bfe3e9901cdefceb4e53cd3775d"


class INaturalist2018(HierarchicalLabels, BaseDataset):
    """`train` / `test` are the images listed in the split files, in their order; labels are
    the species (category) ids of the competition's annotations, as in PML. With
    `hierarchical=True` labels are [N, 2]: (species id, id of its `super_level` taxon), the
    taxa numbered in sorted order of their names.

    The taxonomy is read from the `categories` of train2018.json and val2018.json (whose names
    the competition obfuscated), or, when root holds `categories.json` (the competition's
    un-obfuscated taxonomy, from CATEGORIES_URL: a JSON list of {"id", "name", "supercategory",
    "kingdom", "phylum", "class", "order", "family", "genus"}), from that file alone."""

    LAYOUT = (
        "train_val2018/<supercategory>/<category id>/<image>.jpg",
        "train2018.json and val2018.json (the competition's annotations)",
        f"{SPLIT_FILES['train']} and {SPLIT_FILES['test']} (one image path per line, relative to root)",
        f"optionally {CATEGORIES_FILE} (the un-obfuscated taxonomy per category id, from "
        f"{CATEGORIES_URL})",
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
        category_of, categories, read_from = self.read_annotations()
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
        return paths, self.labels_at_levels(
            species, lambda: self.parent_ids(species, categories, read_from)
        )

    def read_annotations(self):
        """{image path: category id} over both annotation files; {category id: category} with
        the taxonomy, from categories.json when root has it; and the file(s) it came from."""
        category_of, categories = {}, {}
        for name in ANNOTATIONS:
            with open(self.path(name)) as file:
                annotations = json.load(file)
            file_of = {image["id"]: image["file_name"] for image in annotations["images"]}
            for annotation in annotations["annotations"]:
                category_of[file_of[annotation["image_id"]]] = annotation["category_id"]
            categories.update((category["id"], category) for category in annotations["categories"])
        if not self.path(CATEGORIES_FILE).exists():
            return category_of, categories, ANNOTATIONS
        with open(self.path(CATEGORIES_FILE)) as file:
            listed = json.load(file)
        if isinstance(listed, dict):  # an annotation-style file holding the list
            listed = listed.get("categories", [])
        return category_of, {category["id"]: category for category in listed}, (CATEGORIES_FILE,)

    def parent_ids(self, species, categories, read_from):
        """The id of each species' `super_level` taxon, taxa numbered in sorted order of their
        names; refused when the taxonomy lacks that level or a species (rather than giving
        every species one parent)."""
        files = " and ".join(str(self.path(name)) for name in read_from)
        missing = sorted(set(species) - categories.keys())
        if missing:
            raise DatasetError(
                f"{files} has no category for species id(s) {', '.join(map(str, missing[:10]))}"
                f"; the taxonomy must list every species of the split files (the competition's "
                f"categories.json, {CATEGORIES_URL}, lists all 8,142)"
            )
        taxon_name = {c: category.get(self.super_level) for c, category in categories.items()}
        lacking = [c for c, name in taxon_name.items() if not name]
        if lacking:
            raise DatasetError(self.missing_level_message(categories, lacking, files))
        taxon_ids = {name: i for i, name in enumerate(sorted(set(taxon_name.values())))}
        return [taxon_ids[taxon_name[s]] for s in species]

    def missing_level_message(self, categories, lacking, files):
        present = [
            level
            for level in TAXONOMY_LEVELS
            if all(category.get(level) for category in categories.values())
        ]
        where = f"extract it to {self.path(CATEGORIES_FILE)}"
        if CATEGORIES_FILE in files:
            where = f"replace {files} with it"
        return (
            f"super_level={self.super_level!r}: {len(lacking)} of {len(categories)} categories "
            f"in {files} have no {self.super_level!r} field (e.g. category id {lacking[0]}); "
            f"levels present in every category: {', '.join(present) or 'none'}. The full "
            f"taxonomy ({', '.join(TAXONOMY_LEVELS)}) is in the iNaturalist 2018 competition's "
            f"categories.json ({CATEGORIES_URL}): {where} (it replaces the annotation files' "
            "categories), or choose a level present"
        )
