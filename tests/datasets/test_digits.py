import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from metric_runner.datasets import Digits
from metric_runner.datasets.digits import split_indices


def test_zero_shot_split_sizes_and_classes():
    digits = load_digits().target
    train, val, test = Digits("train"), Digits("val"), Digits("test")
    assert sorted(train.labels.unique().tolist()) == [0, 1, 2, 3, 4]
    assert sorted(val.labels.unique().tolist()) == [0, 1, 2, 3, 4]
    assert sorted(test.labels.unique().tolist()) == [5, 6, 7, 8, 9]
    assert len(train) + len(val) == int((digits < 5).sum()) == 901
    assert len(test) == int((digits >= 5).sum()) == 896
    for digit in range(5):  # 20% of every train class held out, rounded
        in_class = int((digits == digit).sum())
        assert int((val.labels == digit).sum()) == round(in_class * 0.2)


def test_val_is_held_out_from_train_and_the_split_is_fixed():
    digits = load_digits().target
    train = split_indices(digits, "train", 0.2)
    val = split_indices(digits, "val", 0.2)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.union1d(train, val), np.flatnonzero(digits < 5))
    torch.manual_seed(123)  # the split does not follow the run's seed
    assert np.array_equal(split_indices(digits, "val", 0.2), val)


def test_images_or_vectors_scaled_to_minus_one_one():
    images, vectors = Digits("test"), Digits("test", as_images=False)
    assert images[0][0].shape == (1, 8, 8) and vectors[0][0].shape == (64,)
    torch.testing.assert_close(images.tensors[0].flatten(1), vectors.tensors[0])
    pixels = load_digits().data[load_digits().target >= 5]
    torch.testing.assert_close(
        vectors.tensors[0], torch.as_tensor(pixels, dtype=torch.float32) / 8 - 1
    )
    assert vectors.tensors[0].min() == -1 and vectors.tensors[0].max() == 1


def test_whole_batch_indexing():
    train = Digits("train")
    inputs, labels = train[[3, 1, 4]]
    assert inputs.shape == (3, 1, 8, 8)
    assert labels.tolist() == [train.labels[3], train.labels[1], train.labels[4]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        Digits("validation")
    with pytest.raises(ValueError, match="val_fraction must be in"):
        Digits("train", val_fraction=1.5)
