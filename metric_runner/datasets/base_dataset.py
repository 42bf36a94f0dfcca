"""The base of the benchmark datasets: PML's constructor, `.paths`, `.labels`, `(image, label)`.

A subclass names its splits (`SPLITS`), describes its folder layout (`LAYOUT`, quoted in every
"not found" error), lists the files that prove the data is there (`REQUIRED`), and implements
`load(split) -> (paths, labels)`. Datasets that can be downloaded return their archives from
`resources()` (url, md5, file name); the others say where to get the files in `MANUAL_DOWNLOAD`.

PML's hooks work too: `generate_split()` sets `paths` and `labels` for `self.split`, and
`download_and_remove()` fetches and extracts the archives into `root` and deletes them; a
subclass written for PML, which overrides these two instead of `load`, runs unchanged.
"""

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .download import Resource, download_and_extract

BAD_IMAGE_ACTIONS = ("skip", "error")
# How many bad files one warning or error lists by name.
LISTED_BAD_FILES = 20


class DatasetError(ValueError):
    """Data that cannot be used as it is (a missing split file, a corrupt image, a bad row)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset root or one of its files is missing (a FileNotFoundError, as PML raises)."""


class CorruptImageError(DatasetError, OSError):
    """An image that cannot be loaded when an item is read (an OSError, as PIL raises in PML)."""


class BaseDataset(Dataset):
    """`root`: the folder holding the dataset; `split`: which of `SPLITS` to load;
    `transform` / `target_transform`: applied to each image / label; `download`: fetch and
    extract the archives into `root` first when they are not there yet.

    Beyond PML: `on_bad_image` — every image's header and end are read once here; unreadable or
    truncated files are dropped with one warning that lists them ("skip"), or stop with an
    error ("error"). A file that fails to load later raises `CorruptImageError` naming it.
    """

    SPLITS = ("train", "test", "train+test")
    LAYOUT = ()  # one entry per file or folder, quoted in errors
    REQUIRED = ()
    MANUAL_DOWNLOAD = ""
    PER_SAMPLE = ()  # names of other per-image arrays that load() sets, filtered with the paths

    def __init__(
        self,
        root,
        split="train+test",
        transform=None,
        target_transform=None,
        download=False,
        on_bad_image="skip",
    ):
        if type(self) is BaseDataset:
            raise TypeError("BaseDataset is abstract; use CUB, Cars196, ... or subclass it")
        self.root = str(Path(root).expanduser())
        self.transform = transform
        self.target_transform = target_transform
        self.split = split
        if on_bad_image not in BAD_IMAGE_ACTIONS:
            raise DatasetError(
                f"on_bad_image must be one of {', '.join(BAD_IMAGE_ACTIONS)}, got {on_bad_image!r}"
            )
        self.on_bad_image = on_bad_image
        if download and not self.is_complete():
            Path(self.root).mkdir(parents=True, exist_ok=True)  # PML's hook finds root made
            self.download_and_remove()
        self.check_complete()
        if split not in self.get_available_splits():
            raise DatasetError(
                f"{type(self).__name__}: unknown split {split!r}; "
                f"supported splits are: {', '.join(self.get_available_splits())}"
            )
        self.generate_split()
        self.labels = np.asarray(self.labels)  # a PML-style generate_split sets a list

    def generate_split(self):
        """Set `paths` and `labels` (and the `PER_SAMPLE` arrays) to the images of `self.split`
        under `self.root`, unreadable images left out as `on_bad_image` says (PML's hook)."""
        paths, labels = self.load(self.split)
        readable = screen_images(paths, self.on_bad_image)
        self.paths = [p for p, ok in zip(paths, readable) if ok]
        self.labels = np.asarray(labels)[readable]
        for name in self.PER_SAMPLE:
            setattr(self, name, getattr(self, name)[readable])

    def get_available_splits(self):
        return self.SPLITS

    @classmethod
    def zero_shot_parts(cls, root, options):
        """{"train": split, "test": split}: the source splits that ZeroShotSplit trains and
        tests on; None when the data has no test split and ZeroShotSplit divides its classes."""
        return {"train": "train", "test": "test"}

    def __init_subclass__(cls, **kwargs):
        # Checked when the class is defined, so no dataset is missing its loader at run time.
        super().__init_subclass__(**kwargs)
        pml_style = cls.generate_split is not BaseDataset.generate_split
        if not (pml_style or callable(getattr(cls, "load", None))):
            raise TypeError(
                f"{cls.__name__} must define load(split) -> (image paths, labels [N] or "
                "[N, levels]), or PML's generate_split() setting self.paths and self.labels"
            )

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        image = self.load_image(index)
        label = self.labels[index]
        label = int(label) if label.ndim == 0 else torch.from_numpy(label.copy())
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def load_image(self, index):
        """Image `index` as an RGB PIL image, before the transform (a subclass may crop it)."""
        return load_image(self.paths[index])

    # ---- presence and download

    def path(self, *parts):
        return Path(self.root, *parts)

    def is_complete(self):
        root = Path(self.root)
        if not self.REQUIRED:  # a PML-style subclass: like PML, any entry in root counts
            return root.is_dir() and any(root.iterdir())
        return all(self.path(name).exists() for name in self.REQUIRED)

    def check_complete(self):
        if not Path(self.root).is_dir():
            raise DatasetNotFoundError(
                self.not_found_message(f"root {self.root!r} is not a folder")
            )
        for name in self.REQUIRED:
            if not self.path(name).exists():
                raise DatasetNotFoundError(self.not_found_message(f"{self.path(name)} is missing"))

    def not_found_message(self, problem):
        name = type(self).__name__
        how = [self.MANUAL_DOWNLOAD] if self.MANUAL_DOWNLOAD else []
        if self.resources():
            urls = ", ".join(resource.url for resource in self.resources())
            how.insert(0, f"download=True fetches {urls}")
        how = "; ".join(how)
        return (
            f"{name}: {problem}. Expected under root: {'; '.join(self.LAYOUT)}. "
            f"Put the files under {self.root!r}; {how}"
        )

    def resources(self):
        """The archives `download_and_remove` fetches, read from the class's URL attributes
        (so pointing e.g. `CUB.DOWNLOAD_URL` at a mirror works, as in PML)."""
        return ()

    def download_and_remove(self):
        """Download each archive of `resources()` into `root`, extract it there and delete it
        (PML's hook); archives whose contents are already there are skipped."""
        if not self.resources():
            raise DatasetNotFoundError(
                self.not_found_message(
                    f"{type(self).__name__} cannot be downloaded automatically "
                    "(there is no public archive)"
                )
            )
        Path(self.root).mkdir(parents=True, exist_ok=True)
        for resource in self.resources():
            download_and_extract(resource, Path(self.root), layout="; ".join(self.LAYOUT))


class HierarchicalLabels:
    """For a BaseDataset whose images have a class and a parent class (SOP's super-classes,
    iNaturalist's taxa, a CSV's super_label): PML's constructor plus `hierarchical`, and
    `labels_at_levels` giving the class ids, or with `hierarchical=True` [N, 2] (class, parent):
    the shape HierarchicalSampler and WithSameParentLabelTester take."""

    def __init__(
        self,
        root,
        split="train+test",
        transform=None,
        target_transform=None,
        download=False,
        on_bad_image="skip",
        hierarchical=False,
    ):
        self.hierarchical = hierarchical
        super().__init__(root, split, transform, target_transform, download, on_bad_image)

    def labels_at_levels(self, classes, parents):
        """[N] class ids, or [N, 2] (class id, parent id) when hierarchical; `parents` is only
        read then (a callable giving them, so sources compute them only when asked)."""
        classes = np.asarray(classes, dtype=np.int64)
        if not self.hierarchical:
            return classes
        return np.stack([classes, np.asarray(parents(), dtype=np.int64)], axis=1)


def open_rgb(path):
    with Image.open(path) as image:
        return image.convert("RGB")


def load_image(path):
    """`open_rgb`, with a failure raised as an error naming the file and what to do about it."""
    try:
        return open_rgb(path)
    except FileNotFoundError as error:
        raise missing_image(path) from error
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise CorruptImageError(
            f"cannot load image {path} ({error}); it is corrupt or truncated: replace or delete "
            "it, or build the dataset again (on_bad_image=skip leaves out files that fail the "
            "check of each file's header and end)"
        ) from error


def missing_image(path):
    """The error for an image deleted since the dataset was built."""
    return DatasetNotFoundError(
        f"image {path} is missing: restore it, or build the dataset again "
        "(on_bad_image=skip leaves out missing and unreadable files)"
    )


# The last bytes of a complete file of each format, before any zero padding an encoder adds.
END_MARKERS = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}
# How much of a file's end is read to find the marker: padding longer than this costs a decode.
TAIL_BYTES = 1024


def image_is_readable(path):
    """The file exists, its image header parses and, for JPEG and PNG, it ends with the format's
    end marker (reading only the header and the last KiB: decoding every pixel would take minutes
    on the larger datasets). A file without the marker is decoded once, to tell a truncated one
    from one carrying extra data after the image (as some cameras write), which loads fine."""
    try:
        with Image.open(path) as image:
            end_marker = END_MARKERS.get(image.format)
            if end_marker is not None and not ends_with(image.fp, end_marker):
                image.load()  # raises OSError on a truncated file
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return True


def ends_with(file, marker):
    size = file.seek(0, 2)
    file.seek(max(0, size - TAIL_BYTES))
    return file.read().rstrip(b"\x00").endswith(marker)


def screen_images(paths, on_bad_image):
    """A mask of the readable images; the others are warned about ("skip") or refused."""
    readable = np.fromiter((image_is_readable(p) for p in paths), dtype=bool, count=len(paths))
    if readable.all():
        return readable
    bad = [p for p, ok in zip(paths, readable) if not ok]
    listed = ", ".join(bad[:LISTED_BAD_FILES])
    more = f" and {len(bad) - LISTED_BAD_FILES} more" if len(bad) > LISTED_BAD_FILES else ""
    if on_bad_image == "error":
        raise DatasetError(
            f"{len(bad)} image(s) cannot be read: {listed}{more}; replace or delete them, "
            "or use on_bad_image=skip to leave them out"
        )
    warnings.warn(
        f"skipping {len(bad)} unreadable image(s): {listed}{more}", RuntimeWarning, stacklevel=3
    )
    return readable


__all__ = ["BaseDataset", "CorruptImageError", "DatasetError", "DatasetNotFoundError", "Resource"]
