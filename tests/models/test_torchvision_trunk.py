import pytest
import torch
import torchvision

from metric_runner.models import TorchvisionTrunk


def test_random_init_without_head_and_grayscale_repeated():
    trunk = TorchvisionTrunk("resnet18", in_channels=1).eval()
    gray = torch.rand(2, 1, 32, 32)
    features = trunk(gray)
    assert features.shape == (2, 512)
    torch.testing.assert_close(features, trunk(gray.expand(-1, 3, -1, -1)))


def test_weights_load_from_a_local_file(tmp_path):
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    trunk = TorchvisionTrunk("resnet18", weights=str(path))
    torch.testing.assert_close(trunk.network.conv1.weight, reference.conv1.weight)
    assert isinstance(trunk.network.fc, torch.nn.Identity)


def test_missing_or_mismatched_weights_and_unknown_arch(tmp_path):
    with pytest.raises(ValueError, match="never downloads"):
        TorchvisionTrunk("resnet18", weights=str(tmp_path / "missing.pth"))
    path = tmp_path / "other.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    with pytest.raises(ValueError, match="cannot load resnet18 weights .*size mismatch"):
        TorchvisionTrunk("resnet18", weights=str(path))
    with pytest.raises(ValueError, match="did you mean resnet18"):
        TorchvisionTrunk("resnet19")
    with pytest.raises(ValueError, match="has 4 channels"):
        TorchvisionTrunk("resnet18", in_channels=4)
