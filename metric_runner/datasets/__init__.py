from .digits import Digits
from .image_folder import ImageFolder
from .random_affine import RandomAffine
