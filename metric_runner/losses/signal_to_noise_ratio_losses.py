from ..distances import SNRDistance
from ..utils import common_functions as c_f
from .contrastive_loss import ContrastiveLoss


class SignalToNoiseRatioContrastiveLoss(ContrastiveLoss):
    """Contrastive loss on the signal-to-noise ratio distance (Yuan et al., "Signal-To-Noise
    Ratio: A Robust Distance Metric for Deep Metric Learning", CVPR 2019):
    [d_SNR(a, p) − pos_margin]_+ for positive pairs and [neg_margin − d_SNR(a, n)]_+ for negative
    pairs, with d_SNR(a, x) = Var(x − a) / Var(a).
    """

    def __init__(self, pos_margin=0, neg_margin=1, **kwargs):
        super().__init__(pos_margin=pos_margin, neg_margin=neg_margin, **kwargs)
        c_f.assert_distance_type(self, SNRDistance)

    def get_default_distance(self):
        return SNRDistance()
