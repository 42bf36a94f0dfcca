from .base_metric_loss_function import BaseMetricLossFunction
from .contrastive_loss import ContrastiveLoss
from .generic_pair_loss import GenericPairLoss
from .mixins import EmbeddingRegularizerMixin, WeightRegularizerMixin
from .multi_similarity_loss import MultiSimilarityLoss
from .ntxent_loss import NTXentLoss
from .supcon_loss import SupConLoss
from .triplet_margin_loss import TripletMarginLoss
