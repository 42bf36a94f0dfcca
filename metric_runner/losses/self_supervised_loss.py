import torch

from ..utils import common_functions as c_f
from .base_loss_wrapper import BaseLossWrapper


class SelfSupervisedLoss(BaseLossWrapper):
    """Labels for two augmented views (as in SimCLR, Chen et al., ICML 2020): ref_emb[i] is the
    only other view of embeddings[i], so the pair (i, i) is the one positive pair of sample i.

    `symmetric=True` uses both views as anchors (the wrapped loss sees the 2N views with labels
    [0..N-1, 0..N-1]); `symmetric=False` only embeddings, with ref_emb as the reference set.
    """

    def __init__(self, loss, symmetric=True, **kwargs):
        super().__init__(loss=loss, **kwargs)
        self.symmetric = symmetric

    @staticmethod
    def supported_losses():
        return [
            "AngularLoss",
            "CircleLoss",
            "ContrastiveLoss",
            "GeneralizedLiftedStructureLoss",
            "IntraPairVarianceLoss",
            "LiftedStructureLoss",
            "MultiSimilarityLoss",
            "NTXentLoss",
            "SignalToNoiseRatioContrastiveLoss",
            "SupConLoss",
            "TripletMarginLoss",
            "NCALoss",
            "TupletMarginLoss",
        ]

    def forward(self, embeddings, ref_emb):
        c_f.check_shapes(embeddings, None)
        if ref_emb.shape != embeddings.shape:
            raise ValueError(
                f"SelfSupervisedLoss needs ref_emb with the same shape as embeddings (row i the "
                f"other view of row i), got {tuple(ref_emb.shape)} and {tuple(embeddings.shape)}."
            )
        labels = c_f.torch_arange_from_size(embeddings)
        if self.symmetric:
            return self.loss(torch.cat([embeddings, ref_emb]), torch.cat([labels, labels]))
        # A tensor of its own: ref_labels that *is* labels would mean "the same set" and drop
        # the pairs (i, i), which here are the positives.
        ref_labels = c_f.torch_arange_from_size(ref_emb)
        return self.loss(embeddings, labels, ref_emb=ref_emb, ref_labels=ref_labels)
