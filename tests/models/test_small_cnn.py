import pytest
import torch

from metric_runner.models import SmallCNN


def test_output_keeps_a_2x2_grid_of_the_last_block():
    model = SmallCNN(in_channels=1, channels=(4, 6))
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 24)
    assert SmallCNN(in_channels=3, channels=(8,))(torch.randn(2, 3, 32, 32)).shape == (2, 32)


def test_spatial_layout_survives_pooling():
    """A stroke on the left and the same stroke on the right give different features."""
    model = SmallCNN(in_channels=1, channels=(4,)).eval()
    left, right = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    left[..., :, 1], right[..., :, 6] = 1, 1
    assert not torch.allclose(model(left), model(right))


def test_vector_input_is_a_clear_error():
    with pytest.raises(ValueError, match="use model=mlp for vector inputs"):
        SmallCNN(in_channels=1)(torch.randn(4, 64))
    with pytest.raises(ValueError, match="at least one block"):
        SmallCNN(in_channels=1, channels=())
