"""Decoding a batch in the main process (on the GPU in real runs; here the same code on the
CPU): the same pixels as PIL, the labels in the sampler's order, and the same transformed
images the workers' path gives."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from metric_runner import losses
from metric_runner.datasets.base_dataset import DatasetError, DatasetNotFoundError
from metric_runner.datasets.batch_decode import (
    BatchDecoder,
    EncodedImages,
    collate_encoded,
    decode_batch,
    decodes_on_device,
)
from metric_runner.datasets.image_pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFiles,
    image_transform,
)
from metric_runner.trainers import MetricLossOnly


def make_images(folder, count=6, size=(30, 20)):
    """JPEGs (RGB and one grayscale) and one PNG of smooth noise; labels 10, 11, 12, ..."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        coarse = rng.integers(0, 256, (size[1] // 5, size[0] // 5, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(size, Image.BILINEAR)
        if index == 1:
            image = image.convert("L")
        path = folder / (f"{index}.png" if index == 2 else f"{index}.jpg")
        image.save(path)
        paths.append(str(path))
    return paths, [10 + i for i in range(count)]


def pil_pixels(path):
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def encoded_batches(images, order, batch_size, num_workers=0):
    return DataLoader(
        EncodedImages(images),
        batch_size=batch_size,
        sampler=order,
        collate_fn=collate_encoded,
        num_workers=num_workers,
    )


def test_decoded_pixels_match_pil_and_labels_keep_the_sampler_order(tmp_path):
    paths, labels = make_images(tmp_path)
    images = ImageFiles(paths, labels, image_transform(False))
    order = [4, 1, 2, 5, 0, 3]
    data, batch_labels, batch_paths = next(iter(encoded_batches(images, order, 6, num_workers=1)))
    assert batch_labels.tolist() == [10 + i for i in order]
    assert batch_paths == [paths[i] for i in order]
    decoded = decode_batch(data, batch_paths, torch.device("cpu"))
    for image, index in zip(decoded, order):
        assert image.dtype == torch.uint8 and image.shape == (3, 20, 30)
        tolerance = 0 if paths[index].endswith(".png") else 2  # JPEG decoders round differently
        assert (image.int() - pil_pixels(paths[index]).int()).abs().max() <= tolerance


@pytest.mark.parametrize("train", [True, False])
def test_batches_equal_what_the_workers_would_give(tmp_path, train):
    """Same seed, same transform steps in the same order: the batch decoder's output is the
    stack of the dataset's own items (normalisation applied once to the batch instead)."""
    paths, labels = make_images(tmp_path)
    images = ImageFiles(paths, labels, image_transform(train, crop_size=16, resize=18))
    decoder = BatchDecoder(images.transform, "cpu")
    order = [2, 0, 5, 3]
    encoded = next(iter(encoded_batches(images, order, 4)))  # iter() draws from the RNG
    torch.manual_seed(0)
    batch, batch_labels = decoder(encoded)
    torch.manual_seed(0)
    expected = torch.stack([images[i][0] for i in order])
    assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.float32
    torch.testing.assert_close(batch, expected, rtol=0, atol=1e-6)
    assert batch_labels.tolist() == [labels[i] for i in order]


def test_normalisation_is_the_imagenet_one(tmp_path):
    path = tmp_path / "flat.png"
    Image.new("RGB", (24, 24), (200, 100, 50)).save(path)
    images = ImageFiles([str(path)] * 2, [0, 1], image_transform(False, crop_size=8, resize=10))
    batch, _ = BatchDecoder(images.transform)(next(iter(encoded_batches(images, [0, 1], 2))))
    expected = (torch.tensor([200, 100, 50]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(
        IMAGENET_STD
    )
    torch.testing.assert_close(
        batch, expected.view(1, 3, 1, 1).expand(2, 3, 8, 8), atol=1e-5, rtol=0
    )


def test_a_corrupt_jpeg_in_the_batch_is_named(tmp_path):
    paths, labels = make_images(tmp_path, count=3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    images = ImageFiles([*paths, str(broken)], [*labels, 99], image_transform(False))
    batch = next(iter(encoded_batches(images, [0, 3, 1], 3)))
    with pytest.raises(DatasetError, match=f"cannot load image {broken}.*corrupt"):
        BatchDecoder(images.transform)(batch)


def test_an_image_deleted_since_the_build_is_named(tmp_path):
    paths, labels = make_images(tmp_path, count=3)
    images = ImageFiles(paths, labels, image_transform(False))
    Path(paths[1]).unlink()
    with pytest.raises(DatasetNotFoundError, match=f"image {paths[1]} is missing: restore it"):
        next(iter(encoded_batches(images, [0, 1, 2], 3)))


def test_decode_modes():
    assert not decodes_on_device("cpu", "cuda")
    assert decodes_on_device("gpu", "cpu") and decodes_on_device("gpu", "cuda")
    assert decodes_on_device("auto", "cuda") and not decodes_on_device("auto", "cpu")
    with pytest.raises(ValueError, match="decode must be one of cpu, gpu, auto, got 'nvjpeg'"):
        decodes_on_device("nvjpeg", "cpu")


def test_a_trainer_takes_the_three_parts_through_pml_s_arguments(tmp_path):
    """EncodedImages as the dataset, collate_encoded as collate_fn, BatchDecoder as
    data_and_label_getter: a training step sees decoded, transformed images."""
    paths, labels = make_images(tmp_path, count=8)
    images = ImageFiles(
        paths, [i % 2 for i in range(8)], image_transform(True, crop_size=8, resize=10)
    )
    seen = []
    trunk = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    trunk.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    trainer = MetricLossOnly(
        models={"trunk": trunk},
        optimizers={"trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1)},
        batch_size=8,
        loss_funcs={"metric_loss": losses.ContrastiveLoss()},
        dataset=EncodedImages(images),
        collate_fn=collate_encoded,
        data_and_label_getter=BatchDecoder(images.transform, "cpu"),
        dataloader_num_workers=0,
        iterations_per_epoch=1,
    )
    weight = trunk[1].weight.clone()
    trainer.train(num_epochs=1)
    assert seen == [(8, 3, 8, 8)] and not torch.equal(weight, trunk[1].weight)


def test_a_zero_shot_split_decodes_its_batches_as_it_is_told(tmp_path):
    """The runner asks the split (`dataset.decode`) and hands BatchDecoder the split's transform:
    the batches equal the split's own items."""
    from metric_runner.datasets import ZeroShotSplit
    from tests.datasets.fixtures import make_cub

    root = make_cub(tmp_path / "cub", class_ids=[*range(1, 5), *range(101, 105)])
    tiny = {"crop_size": 8, "resize": 10}
    test = ZeroShotSplit("CUB", root, "test", transform=tiny, decode="auto")
    assert test.decodes_on("cuda") and not test.decodes_on("cpu")
    order = list(range(len(test)))[::-1]
    batch, labels = BatchDecoder(test.transform)(next(iter(encoded_batches(test, order, 5))))
    expected = torch.stack([test[i][0] for i in order[:5]])
    torch.testing.assert_close(batch, expected, rtol=0, atol=1e-6)
    assert torch.equal(labels, test.labels[order[:5]])
    with pytest.raises(ValueError, match="decode must be one of cpu, gpu, auto"):
        ZeroShotSplit("CUB", root, "test", transform=tiny, decode="cuda")
