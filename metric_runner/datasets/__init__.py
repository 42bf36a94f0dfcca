from .base_dataset import BaseDataset, CorruptImageError, DatasetError, DatasetNotFoundError
from .cars196 import Cars196
from .csv_dataset import CSVDataset
from .cub import CUB
from .digits import Digits
from .image_folder import ImageFolder
from .inaturalist2018 import INaturalist2018
from .inshop import InShop
from .random_affine import RandomAffine
from .sop import StanfordOnlineProducts
from .zero_shot_split import ZeroShotSplit
