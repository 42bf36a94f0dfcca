"""BN-Inception (Ioffe & Szegedy, "Batch Normalization", ICML 2015, Figure 5 / appendix table):
the Inception network with batch normalization after every convolution, the 5x5 convolutions
replaced by two 3x3 ones, and global average pooling to 1024 features. The trunk of "A Metric
Learning Reality Check" and most deep-metric-learning papers before it."""

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets.image_pipeline import IMAGENET_MEAN, IMAGENET_STD

# The per-channel means (B, G, R, in 0-255) the Caffe-trained BN-Inception weights subtract
# from their BGR input.
CAFFE_BGR_MEAN = (104.0, 117.0, 128.0)
INPUT_SPACES = ("caffe", "imagenet")
# A key only the Caffe-converted weights have: they name their units flat.
CAFFE_FIRST_CONV = "conv1_7x7_s2.weight"

# The paper's table, one row per inception block: name, #1x1, #3x3 reduce, #3x3,
# double #3x3 reduce, double #3x3, pooling, pool projection (0 = the pooled input passes
# through), stride. A stride-2 block has no 1x1 branch and strides its last 3x3 convolutions and
# its max pooling.
INCEPTION_TABLE = (
    ("inception_3a", 64, 64, 64, 64, 96, "avg", 32, 1),
    ("inception_3b", 64, 64, 96, 64, 96, "avg", 64, 1),
    ("inception_3c", 0, 128, 160, 64, 96, "max", 0, 2),
    ("inception_4a", 224, 64, 96, 96, 128, "avg", 128, 1),
    ("inception_4b", 192, 96, 128, 96, 128, "avg", 128, 1),
    ("inception_4c", 160, 128, 160, 128, 160, "avg", 128, 1),
    ("inception_4d", 96, 128, 192, 160, 192, "avg", 128, 1),
    ("inception_4e", 0, 128, 192, 192, 256, "max", 0, 2),
    ("inception_5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    ("inception_5b", 352, 192, 320, 192, 224, "max", 128, 1),
)


class ConvUnit(nn.Module):
    """Convolution, batch normalization, ReLU. The convolution keeps its bias, as the published
    (Caffe-converted) weights have one."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, inputs):
        return torch.relu(self.bn(self.conv(inputs)))


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on the channel axis: 1x1; 1x1 then 3x3; 1x1 then two
    3x3; pooling then a 1x1 projection (or the pooled input itself)."""

    def __init__(
        self, in_channels, ones, reduce, out3, double_reduce, out_double, pool, proj, stride
    ):
        super().__init__()
        branches = {}
        if ones:
            branches["1x1"] = ConvUnit(in_channels, ones, 1)
        branches["3x3_reduce"] = ConvUnit(in_channels, reduce, 1)
        branches["3x3"] = ConvUnit(reduce, out3, 3, stride)
        branches["double_3x3_reduce"] = ConvUnit(in_channels, double_reduce, 1)
        branches["double_3x3_1"] = ConvUnit(double_reduce, out_double, 3)
        branches["double_3x3_2"] = ConvUnit(out_double, out_double, 3, stride)
        if proj:
            branches["pool_proj"] = ConvUnit(in_channels, proj, 1)
        self.units = nn.ModuleDict(branches)
        pooling = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
        self.pool = pooling(3, stride=stride, padding=1 if stride == 1 else 0, ceil_mode=True)
        self.stride = stride
        self.out_channels = ones + out3 + out_double + (proj or in_channels)

    def forward(self, inputs):
        units = self.units
        outputs = [units["1x1"](inputs)] if "1x1" in units else []
        outputs.append(units["3x3"](units["3x3_reduce"](inputs)))
        double = units["double_3x3_1"](units["double_3x3_reduce"](inputs))
        outputs.append(units["double_3x3_2"](double))
        pooled = self.pool(padded_to_even(inputs) if self.stride == 2 else inputs)
        outputs.append(units["pool_proj"](pooled) if "pool_proj" in units else pooled)
        return torch.cat(outputs, dim=1)


def padded_to_even(inputs):
    """An odd height or width grown by one row/column of -inf at the far edge. The Caffe-style
    stride-2 pooling (no padding, ceil mode) of an odd grid n gives (n - 1) / 2 cells where the
    strided convolutions give (n + 1) / 2; on even grids (all of them at 224 or 227 px) this is
    a no-op, so pretrained weights see exactly the pooling they were trained with."""
    height, width = inputs.shape[-2:]
    if height % 2 == 0 and width % 2 == 0:
        return inputs
    return F.pad(inputs, (0, width % 2, 0, height % 2), value=float("-inf"))


class BNInception(nn.Module):
    """BN-Inception without its classifier: (N, 3, H, W) images -> (N, 1024) globally
    average-pooled features, for inputs of 224 or 227 px as in the papers or any size down to
    the 8 px digits.

    `weights` names a local state-dict file, nothing is downloaded: one saved from this module,
    or the Caffe-converted ImageNet weights deep-metric-learning code uses
    (bn_inception-52deb4733.pth; its `last_linear` classifier is dropped). `input_space="caffe"`
    (the default) takes images normalised as transform/standard does (RGB, ImageNet mean/std) and
    turns them into what those weights were trained on: BGR, 0-255, minus the Caffe means;
    `"imagenet"` feeds the images unchanged (for weights trained on the standard transform).
    One-channel images are repeated to three channels.
    """

    def __init__(self, weights=None, input_space="caffe", in_channels=3):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(
                f"BNInception takes 3-channel (or grayscale) images, the data has {in_channels} channels"
            )
        if input_space not in INPUT_SPACES:
            raise ValueError(f"input_space must be one of {INPUT_SPACES}, got {input_space!r}")
        self.in_channels = in_channels
        self.input_space = input_space
        self.conv1_7x7_s2 = ConvUnit(3, 64, 7, stride=2)
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2_3x3_reduce = ConvUnit(64, 64, 1)
        self.conv2_3x3 = ConvUnit(64, 192, 3)
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        blocks = OrderedDict()
        in_channels = 192
        for name, *row in INCEPTION_TABLE:
            blocks[name] = InceptionBlock(in_channels, *row)
            in_channels = blocks[name].out_channels
        self.blocks = nn.Sequential(blocks)
        self.out_features = in_channels
        if weights is not None:
            load_bn_inception_weights(self, weights)

    def forward(self, images):
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"BNInception expects images (N, {self.in_channels}, H, W), got shape {tuple(images.shape)}"
            )
        if self.in_channels == 1:
            images = images.expand(-1, 3, -1, -1)
        if self.input_space == "caffe":
            images = to_caffe_input(images)
        features = self.pool1(self.conv1_7x7_s2(images))
        features = self.pool2(self.conv2_3x3(self.conv2_3x3_reduce(features)))
        features = self.blocks(features)
        return features.mean(dim=(2, 3))


def to_caffe_input(images):
    """ImageNet-normalised RGB -> BGR in 0-255 minus the Caffe means, as one affine map."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    caffe_mean = images.new_tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1)
    return (images * std + mean).flip(1) * 255 - caffe_mean


def caffe_name(key):
    """Our state-dict key -> the flat name in the Caffe-converted weights:
    `blocks.inception_3a.units.1x1.bn.weight` -> `inception_3a_1x1_bn.weight`,
    `conv1_7x7_s2.conv.bias` -> `conv1_7x7_s2.bias`."""
    *path, layer, parameter = key.split(".")
    unit = "_".join(part for part in path if part not in ("blocks", "units"))
    return f"{unit}{'_bn' if layer == 'bn' else ''}.{parameter}"


def load_bn_inception_weights(model, weights):
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ValueError(
            f"weights file {str(path)!r} not found; put the BN-Inception state dict there "
            "(metric-run never downloads), or weights=null for random init"
        )
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a state-dict file
        raise ValueError(f"cannot read BN-Inception weights from {str(path)!r}: {error}") from None
    if not isinstance(state_dict, dict):
        raise ValueError(f"{str(path)!r} holds a {type(state_dict).__name__}, not a state dict")
    ours = model.state_dict()
    if CAFFE_FIRST_CONV in state_dict:
        state_dict = from_caffe_names(state_dict, ours)
    missing = sorted(set(ours) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(ours))
    if missing or unexpected:
        raise ValueError(
            f"{str(path)!r} is not a BN-Inception state dict: "
            f"{len(missing)} keys missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); give this module's own "
            "state_dict() or the Caffe-converted bn_inception weights"
        )
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:  # right names, wrong shapes
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise ValueError(f"cannot load BN-Inception weights from {str(path)!r}: {detail}") from None


def from_caffe_names(state_dict, ours):
    """Rename a Caffe-converted state dict's keys to ours; its classifier (`last_linear`) is
    dropped and a missing `num_batches_tracked` (older files) counts as zero."""
    renamed = {key: state_dict[caffe_name(key)] for key in ours if caffe_name(key) in state_dict}
    for key in ours:
        if key.endswith("num_batches_tracked") and key not in renamed:
            renamed[key] = torch.zeros((), dtype=torch.long)
    known = {caffe_name(key) for key in ours}
    for key in state_dict:
        if key not in known and not key.startswith("last_linear."):
            renamed[key] = state_dict[key]  # reported as unexpected
    return renamed
