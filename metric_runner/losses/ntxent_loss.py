import torch

from ..distances import CosineSimilarity
from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from .generic_pair_loss import GenericPairLoss


class NTXentLoss(GenericPairLoss):
    """Normalized temperature-scaled cross entropy, a.k.a. InfoNCE (Chen et al., SimCLR,
    ICML 2020; van den Oord et al., 2018).

    Per positive pair (a, p): -log(exp(s_ap / t) / (exp(s_ap / t) + sum_{(a, n)} exp(s_an / t)))
    over the negative pairs of the same anchor (a repeated negative pair counts each time).
    With a distance instead of a similarity, s = -d.
    """

    def __init__(self, temperature=0.07, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)
        self.temperature = temperature
        self.add_to_recordable_attributes(name="temperature", is_stat=False)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        """Negatives are summed per anchor as masked rows of the N×M matrix (weighted by how
        often each negative pair occurs), so memory is O(N×M + #pairs), never
        #pos pairs × #neg pairs."""
        same_set = ref_emb is embeddings
        ref_labels = None if same_set else ref_labels
        if indices_tuple is None:
            pos_mask, neg_count = lmu.get_matches_and_diffs(labels, ref_labels)
            a, p = torch.where(pos_mask)
        else:
            a, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
            if len(a) == 0 or len(a2) == 0:
                return self.zero_losses()
            shape = (len(embeddings), len(ref_emb))
            neg_count = torch.bincount(a2 * shape[1] + n, minlength=shape[0] * shape[1]).view(shape)
        mat = self.distance(embeddings, None if same_set else ref_emb)
        return self.pos_pair_losses(mat, a, p, neg_count)

    def pos_pair_losses(self, mat, a, p, neg_count):
        """`neg_count[i, j]`: how many times (i, j) is a negative pair (a bool mask when each
        occurs once)."""
        logits = (mat if self.distance.is_inverted else -mat) / self.temperature
        has_neg = neg_count.bool()
        neg_logits = logits
        if neg_count.dtype != torch.bool:
            # A negative pair listed k times contributes k exp(s / t): add log(k) to its logit.
            neg_logits = logits + neg_count.to(logits.dtype).clamp(min=1).log()
        neg_logsumexp = lmu.logsumexp(neg_logits, keep_mask=has_neg, add_one=False).squeeze(1)
        # An anchor without negatives gets the lowest finite value, so its losses are exactly 0
        # with zero (not NaN) gradients.
        neg_logsumexp = neg_logsumexp.masked_fill(
            ~lmu.any_true(has_neg, dim=1), c_f.neg_inf(logits.dtype)
        )
        pos_logits = lmu.values_at(logits, a, p)
        losses = torch.logaddexp(pos_logits, neg_logsumexp.index_select(0, a)) - pos_logits
        return {"loss": {"losses": losses, "indices": (a, p), "reduction_type": "pos_pair"}}

    def get_default_distance(self):
        return CosineSimilarity()
