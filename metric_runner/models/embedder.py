from torch import nn


class Embedder(nn.Module):
    """Maps trunk features to the embedding: a linear layer, or an MLP when `hidden_sizes`
    lists hidden widths (Linear + ReLU each, then a final Linear to `out_features`)."""

    def __init__(self, in_features, out_features=64, hidden_sizes=()):
        super().__init__()
        layers = []
        for width in hidden_sizes:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
            in_features = width
        layers.append(nn.Linear(in_features, out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, features):
        return self.layers(features)
