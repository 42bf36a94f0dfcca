import difflib
from pathlib import Path

import torch
from torch import nn

# The attribute holding each torchvision family's classification head.
HEAD_ATTRIBUTES = ("fc", "classifier", "head", "heads")


class TorchvisionTrunk(nn.Module):
    """A torchvision classification network (`arch`: resnet18, resnet50, ...) with its head
    replaced by the identity, so it outputs pooled features.

    Weights are random unless `weights` names a local state-dict file of that architecture
    (e.g. torchvision's own resnet18-f37072fd.pth); nothing is downloaded. One-channel images
    are repeated to three channels.
    """

    def __init__(self, arch="resnet18", weights=None, in_channels=3):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(
                f"{arch} takes 3-channel (or grayscale) images, the data has {in_channels} channels"
            )
        self.network = build_network(arch)
        if weights is not None:
            load_local_weights(self.network, arch, weights)
        remove_head(self.network, arch)
        self.in_channels = in_channels

    def forward(self, images):
        if self.in_channels == 1:
            images = images.expand(-1, 3, -1, -1)
        return self.network(images)


def build_network(arch):
    import torchvision  # imported here: it takes seconds, and only these models need it

    available = torchvision.models.list_models(module=torchvision.models)
    if arch not in available:
        hint = difflib.get_close_matches(arch, available, n=3)
        raise ValueError(
            f"unknown torchvision architecture {arch!r}"
            + (f"; did you mean {' or '.join(hint)}?" if hint else f"; choose from {available}")
        )
    return torchvision.models.get_model(arch, weights=None)


def load_local_weights(network, arch, weights):
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ValueError(
            f"weights file {str(path)!r} not found; download the {arch} state dict yourself "
            "(metric-run never downloads) and pass its path, or weights=null for random init"
        )
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(state_dict)
    except Exception as error:  # unreadable file or another architecture's weights
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines or [type(error).__name__])[0]
        raise ValueError(f"cannot load {arch} weights from {str(path)!r}: {detail}") from None


def remove_head(network, arch):
    for attribute in HEAD_ATTRIBUTES:
        if hasattr(network, attribute):
            setattr(network, attribute, nn.Identity())
            return
    raise ValueError(f"do not know where {arch}'s classification head is; use a resnet-like arch")
