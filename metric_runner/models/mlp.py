from torch import nn


class MLP(nn.Module):
    """A multilayer-perceptron trunk: flattens its input, then Linear + ReLU per hidden size.

    The output is (N, hidden_sizes[-1]).
    """

    def __init__(self, in_features, hidden_sizes=(256, 256)):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("hidden_sizes must list at least one layer width, e.g. [256]")
        layers = [nn.Flatten()]
        for width in hidden_sizes:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
            in_features = width
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs):
        return self.layers(inputs)
