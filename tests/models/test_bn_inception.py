import copy

import pytest
import torch

from metric_runner import losses
from metric_runner.models import BNInception
from metric_runner.models.bn_inception import caffe_name, padded_to_even
from metric_runner.trainers import MetricLossOnly

# The paper's table (Ioffe & Szegedy 2015, Figure 5), typed again here so the count below does
# not read the module: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool proj
# (0 = pass-through), for 3a 3b 3c 4a 4b 4c 4d 4e 5a 5b.
PAPER_ROWS = [
    (64, 64, 64, 64, 96, 32),
    (64, 64, 96, 64, 96, 64),
    (0, 128, 160, 64, 96, 0),
    (224, 64, 96, 96, 128, 128),
    (192, 96, 128, 96, 128, 128),
    (160, 128, 160, 128, 160, 128),
    (96, 128, 192, 160, 192, 128),
    (0, 128, 192, 192, 256, 0),
    (352, 192, 320, 160, 224, 128),
    (352, 192, 320, 192, 224, 128),
]


def unit_parameters(kernel, cin, cout):
    """Convolution weights and bias, then the batch norm's scale and shift."""
    return kernel * kernel * cin * cout + cout + 2 * cout


def count_from_the_table():
    total = unit_parameters(7, 3, 64) + unit_parameters(1, 64, 64) + unit_parameters(3, 64, 192)
    cin = 192
    for ones, reduce, out3, double_reduce, double, proj in PAPER_ROWS:
        total += unit_parameters(1, cin, ones) if ones else 0
        total += unit_parameters(1, cin, reduce) + unit_parameters(3, reduce, out3)
        total += unit_parameters(1, cin, double_reduce) + unit_parameters(3, double_reduce, double)
        total += unit_parameters(3, double, double)
        total += unit_parameters(1, cin, proj) if proj else 0
        cin = ones + out3 + double + (proj or cin)
    return total, cin


def test_parameter_count_is_the_tables():
    # 10,270,240 without the classifier; with the 1000-way one (1024*1000 + 1000) it is
    # 11,295,240, the ~11.3M usually quoted for BN-Inception.
    expected, out_channels = count_from_the_table()
    assert expected == 10_270_240 and out_channels == 1024
    assert sum(p.numel() for p in BNInception().parameters()) == expected


@pytest.mark.parametrize("size", [224, 227, 29, 8])
def test_pooled_1024_features(size):
    torch.manual_seed(0)
    trunk = BNInception().eval()
    with torch.no_grad():
        features = trunk(torch.randn(2, 3, size, size))
    assert features.shape == (2, 1024)
    assert torch.isfinite(features).all() and (features >= 0).all()  # pooled ReLU outputs


def test_stride_2_pooling_of_an_odd_grid_keeps_the_last_row_and_column():
    grid = torch.randn(1, 2, 6, 6)
    assert padded_to_even(grid) is grid  # even grids: Caffe's pooling unchanged
    odd = grid[..., :5, :5]
    pooled = torch.nn.MaxPool2d(3, stride=2, ceil_mode=True)(padded_to_even(odd))
    assert pooled.shape[-2:] == (3, 3)  # as the stride-2 convolutions: (5 + 1) / 2
    assert torch.equal(pooled[..., 2, 2], odd[..., 4, 4])  # window rows/cols 4..6, only 4 real
    assert torch.equal(pooled[..., 0, 0], odd[..., :3, :3].amax(dim=(-2, -1)))


def test_grayscale_repeated_and_bad_shapes_refused():
    torch.manual_seed(0)
    color, gray = BNInception().eval(), BNInception(in_channels=1).eval()
    gray.load_state_dict(color.state_dict())
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(image), color(image.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match=r"expects images \(N, 3, H, W\), got shape \(3, 64, 64\)"):
        color(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="has 4 channels"):
        BNInception(in_channels=4)
    with pytest.raises(ValueError, match="input_space must be one of"):
        BNInception(input_space="bgr")


def test_caffe_input_space_is_bgr_0_255_minus_the_caffe_means():
    pixels = torch.randint(0, 256, (1, 3, 4, 4)).float()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    normalised = (pixels / 255 - mean) / std  # what transform/standard gives
    expected = pixels[:, [2, 1, 0]] - torch.tensor([104.0, 117.0, 128.0]).view(1, 3, 1, 1)
    seen = []
    trunk = BNInception().eval()
    trunk.conv1_7x7_s2.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        trunk(normalised.expand(1, 3, 4, 4).repeat(1, 1, 8, 8))
    torch.testing.assert_close(seen[0][..., :4, :4], expected, atol=1e-3, rtol=0)


def test_weights_round_trip_through_a_local_file(tmp_path):
    torch.manual_seed(0)
    source = BNInception()
    for module in source.modules():  # non-default statistics, so the load is visible
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    path = tmp_path / "bn_inception.pth"
    torch.save(source.state_dict(), path)
    loaded = BNInception(weights=str(path))
    for (name, value), (_, expected) in zip(
        loaded.state_dict().items(), source.state_dict().items(), strict=True
    ):
        assert torch.equal(value, expected), name


def test_caffe_converted_weights_load_under_their_flat_names(tmp_path):
    """The published Caffe-converted file names units flat (conv1_7x7_s2.weight,
    inception_3a_1x1_bn.running_mean), has no num_batches_tracked and keeps its classifier."""
    torch.manual_seed(0)
    source = BNInception()
    flat = {
        caffe_name(key): value.clone()
        for key, value in source.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    for key in (
        "conv1_7x7_s2.weight",
        "conv2_3x3_reduce_bn.bias",
        "inception_3a_double_3x3_2_bn.running_var",
        "inception_3c_3x3.weight",
        "inception_5b_pool_proj.bias",
    ):
        assert key in flat
    assert "inception_3c_1x1.weight" not in flat and "inception_3c_pool_proj.weight" not in flat
    flat["last_linear.weight"], flat["last_linear.bias"] = (
        torch.zeros(1000, 1024),
        torch.zeros(1000),
    )
    path = tmp_path / "bn_inception-caffe.pth"
    torch.save(flat, path)
    loaded = BNInception(weights=str(path))
    torch.testing.assert_close(
        loaded.blocks.inception_4e.units["double_3x3_2"].bn.running_var,
        source.blocks.inception_4e.units["double_3x3_2"].bn.running_var,
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(
        loaded.conv1_7x7_s2.conv.weight, source.conv1_7x7_s2.conv.weight, rtol=0, atol=0
    )


def test_missing_or_mismatched_weights_are_named(tmp_path):
    with pytest.raises(ValueError, match="not found; .*never downloads"):
        BNInception(weights=str(tmp_path / "missing.pth"))
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError, match=r"not a BN-Inception state dict: \d+ keys missing"):
        BNInception(weights=str(path))
    state = BNInception().state_dict()
    state["conv1_7x7_s2.conv.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(state, path)
    with pytest.raises(ValueError, match="cannot load BN-Inception weights .*size mismatch"):
        BNInception(weights=str(path))


def batchnorm_statistics(model):
    return {
        name: (module.running_mean.clone(), module.running_var.clone())
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.BatchNorm2d)
    }


def train_one_step(freeze_trunk_batchnorm):
    torch.manual_seed(0)
    trunk, embedder = BNInception(), torch.nn.Linear(1024, 8)
    images = torch.randn(8, 3, 32, 32)
    labels = torch.arange(8) % 2
    statistics = batchnorm_statistics(trunk)
    affine = copy.deepcopy(trunk.conv2_3x3.bn.weight)
    modes = []
    trunk.conv2_3x3.bn.register_forward_hook(lambda module, *_: modes.append(module.training))
    trainer = MetricLossOnly(
        models={"trunk": trunk, "embedder": embedder},
        optimizers={
            "trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1),
            "embedder_optimizer": torch.optim.SGD(embedder.parameters(), lr=0.1),
        },
        batch_size=8,
        loss_funcs={"metric_loss": losses.ContrastiveLoss()},
        dataset=torch.utils.data.TensorDataset(images, labels),
        dataloader_num_workers=0,
        freeze_trunk_batchnorm=freeze_trunk_batchnorm,
        iterations_per_epoch=1,
    )
    trainer.train(num_epochs=1)
    moved = [
        name
        for name, (mean, var) in batchnorm_statistics(trunk).items()
        if not (torch.equal(mean, statistics[name][0]) and torch.equal(var, statistics[name][1]))
    ]
    return moved, modes, not torch.equal(affine, trunk.conv2_3x3.bn.weight)


def test_frozen_batchnorm_keeps_every_statistic_through_the_trainer():
    moved, modes, affine_trained = train_one_step(freeze_trunk_batchnorm=True)
    assert moved == [] and modes == [False]
    # As in PML (and the trainer's contract): only the statistics freeze; scale and shift train.
    assert affine_trained
    moved, modes, _ = train_one_step(freeze_trunk_batchnorm=False)
    assert len(moved) == 3 + sum(5 + bool(row[0]) + bool(row[5]) for row in PAPER_ROWS)
    assert modes == [True]
