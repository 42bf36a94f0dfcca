from .bn_inception import BNInception
from .embedder import Embedder
from .mlp import MLP
from .small_cnn import SmallCNN
from .torchvision_trunk import TorchvisionTrunk
