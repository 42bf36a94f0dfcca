import torch

from metric_runner.models import Embedder


def test_linear_embedder_is_one_affine_map():
    embedder = Embedder(in_features=10, out_features=4)
    features = torch.randn(6, 10)
    (layer,) = embedder.layers
    torch.testing.assert_close(embedder(features), features @ layer.weight.T + layer.bias)


def test_mlp_embedder_has_hidden_layers_and_no_final_relu():
    embedder = Embedder(in_features=10, out_features=4, hidden_sizes=(7,))
    assert [type(m).__name__ for m in embedder.layers] == ["Linear", "ReLU", "Linear"]
    out = embedder(torch.randn(50, 10))
    assert out.shape == (50, 4) and (out < 0).any()
