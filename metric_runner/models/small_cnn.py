from torch import nn


class SmallCNN(nn.Module):
    """A small convolutional trunk for low-resolution images (e.g. the 8x8 digits).

    One block per entry of `channels`: 3x3 convolution, batch norm, ReLU, with 2x2 max pooling
    between blocks. The last feature map is average-pooled to a 2x2 grid and flattened, so the
    features keep where the strokes are: the output is (N, 4 * channels[-1]).
    """

    def __init__(self, in_channels, channels=(32, 64, 128)):
        super().__init__()
        if not channels:
            raise ValueError("channels must list at least one block width, e.g. [32, 64]")
        layers = []
        for index, width in enumerate(channels):
            if index > 0:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            in_channels = width
        layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten()]
        self.layers = nn.Sequential(*layers)

    def forward(self, images):
        if images.ndim != 4:
            raise ValueError(
                f"SmallCNN expects images (N, C, H, W), got shape {tuple(images.shape)}; "
                "use model=mlp for vector inputs"
            )
        return self.layers(images)
