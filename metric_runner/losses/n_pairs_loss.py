import torch

from ..distances import DotProductSimilarity
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class NPairsLoss(BaseMetricLossFunction):
    """Multi-class N-pair loss (Sohn, "Improved Deep Metric Learning with Multi-class N-pair
    Loss Objective", NIPS 2016): one (anchor, positive) pair per class, and each anchor's
    cross-entropy over the similarities to every pair's positive, its own being the target.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_to_recordable_attributes(name="num_pairs", is_stat=True)

    def check_labels_available(self, labels, indices_tuple):
        if labels is None:
            raise ValueError("NPairsLoss needs labels: it keeps one positive pair per label.")

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if ref_emb is not embeddings:
            raise ValueError(
                "NPairsLoss does not support ref_emb: anchors and positives both come from embeddings."
            )
        anchor_idx, positive_idx = self.one_pair_per_label(labels, indices_tuple)
        # Set whatever collect_stats is, as PML does.
        self.num_pairs = len(anchor_idx)
        if len(anchor_idx) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings[anchor_idx], embeddings[positive_idx])
        logits = mat if self.distance.is_inverted else -mat
        targets = torch.arange(len(anchor_idx), device=embeddings.device)
        losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        return {"loss": {"losses": losses, "indices": anchor_idx, "reduction_type": "element"}}

    @staticmethod
    def one_pair_per_label(labels, indices_tuple):
        """The first positive pair of each anchor label, in label order."""
        if indices_tuple is None:
            # Only positive pairs are needed: skip the N² negative-pair list.
            anchor_idx, positive_idx = torch.where(lmu.get_matches_and_diffs(labels)[0])
        else:
            anchor_idx, positive_idx, _, _ = lmu.convert_to_pairs(indices_tuple, labels)
        _, first = lmu.unique_first_occurrence(labels[anchor_idx])
        return anchor_idx[first], positive_idx[first]

    def get_default_distance(self):
        return DotProductSimilarity()
