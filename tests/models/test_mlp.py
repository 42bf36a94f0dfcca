import pytest
import torch

from metric_runner.models import MLP


def test_flattens_images_and_applies_linear_relu_layers():
    model = MLP(in_features=64, hidden_sizes=(16, 8))
    images = torch.randn(3, 1, 8, 8)
    out = model(images)
    assert out.shape == (3, 8) and (out >= 0).all()
    first, second = model.layers[1], model.layers[3]
    expected = torch.relu(second(torch.relu(first(images.flatten(1)))))
    torch.testing.assert_close(out, expected)


def test_needs_a_hidden_layer():
    with pytest.raises(ValueError, match="at least one layer"):
        MLP(in_features=64, hidden_sizes=())
