import numpy as np
import torch
from torch.utils.data import TensorDataset

TRAIN_CLASSES = (0, 1, 2, 3, 4)
SPLITS = ("train", "val", "test")


class Digits(TensorDataset):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), split zero-shot.

    Classes 0-4 form `train`, minus a `val_fraction` of each class held out as `val`; classes
    5-9 form `test`, so test retrieval is on classes the model never saw. Samples are 1x8x8
    images (or 64-d vectors with `as_images=False`) scaled to [-1, 1]; `labels` holds the
    digit of each sample. The split is fixed: it does not depend on the run's seed. As a
    TensorDataset it can be indexed a whole batch at a time.
    """

    def __init__(self, split, as_images=True, val_fraction=0.2):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        from sklearn.datasets import load_digits  # imported here: slow, and only needed now

        pixels, digits = load_digits(return_X_y=True)
        indices = split_indices(digits, split, val_fraction)
        data = torch.as_tensor(pixels[indices], dtype=torch.float32) / 8 - 1
        self.labels = torch.as_tensor(digits[indices], dtype=torch.long)
        super().__init__(data.reshape(-1, 1, 8, 8) if as_images else data, self.labels)


def split_indices(digits, split, val_fraction):
    if split == "test":
        return np.flatnonzero(~np.isin(digits, TRAIN_CLASSES))
    rng = np.random.default_rng(0)
    indices = []
    for digit in TRAIN_CLASSES:
        members = rng.permutation(np.flatnonzero(digits == digit))
        num_val = round(len(members) * val_fraction)
        indices.append(members[:num_val] if split == "val" else members[num_val:])
    return np.sort(np.concatenate(indices))
