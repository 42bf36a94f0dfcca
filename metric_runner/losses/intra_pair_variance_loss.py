import functools

import torch

from ..distances import CosineSimilarity
from ..utils import loss_and_miner_utils as lmu
from .generic_pair_loss import GenericPairLoss


class IntraPairVarianceLoss(GenericPairLoss):
    """Intra-pair variance loss (Yu & Tao, "Deep Metric Learning with Tuplet Margin Loss",
    ICCV 2019).

    With μ⁺, μ⁻ the mean positive and negative similarities of the batch (gradients flow
    through them): [(1 − ε⁺) μ⁺ − s_ap]_+² per positive pair and [s_an − (1 + ε⁻) μ⁻]_+² per
    negative pair. For distances (smaller = closer) both inequalities and ε signs flip.
    """

    def __init__(self, pos_eps=0.01, neg_eps=0.01, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)
        self.pos_eps = pos_eps
        self.neg_eps = neg_eps
        self.add_to_recordable_attributes(list_of_names=["pos_eps", "neg_eps"], is_stat=False)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if indices_tuple is not None:
            return super().compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        same_set = ref_emb is embeddings
        pos_mask, neg_mask = lmu.get_matches_and_diffs(labels, None if same_set else ref_labels)
        mat = self.distance(embeddings, None if same_set else ref_emb)
        return self.all_pairs_loss(mat, pos_mask, neg_mask)

    def all_pairs_loss(self, mat, pos_mask, neg_mask):
        """Every pair of the masks, listed in row-major order; the indices of the negative
        pairs, nearly all of the N×M entries, are built only if the reducer asks for them."""
        num_cols = mat.shape[1]
        pos_flat = torch.nonzero(pos_mask.view(-1)).squeeze(1)
        pos_pair_dist = mat.flatten().index_select(0, pos_flat)
        neg_pairs = functools.cache(lambda: torch.where(neg_mask))
        indices = lmu.LazyIndexTuple(
            [
                lambda: pos_flat // num_cols,
                lambda: pos_flat % num_cols,
                lambda: neg_pairs()[0],
                lambda: neg_pairs()[1],
            ],
            [len(pos_flat)] * 2 + [int(torch.count_nonzero(neg_mask))] * 2,
        )
        neg_loss = _SquaredViolationOfScaledMean.apply(
            mat.masked_select(neg_mask), self.neg_factor(), self.distance.is_inverted
        )
        return self.loss_dict(self.pos_loss(pos_pair_dist), neg_loss, indices)

    def _compute_loss(self, pos_pair_dist, neg_pair_dist, indices_tuple):
        neg_factor = self.neg_factor()
        neg_loss = self.squared_violation(neg_factor * torch.mean(neg_pair_dist), neg_pair_dist)
        return self.loss_dict(self.pos_loss(pos_pair_dist), neg_loss, indices_tuple)

    def pos_loss(self, pos_pair_dist):
        # A similarity should stay above (1 - ε⁺)μ⁺; a distance below (1 + ε⁺)μ⁺.
        pos_factor = 1 - self.pos_eps if self.distance.is_inverted else 1 + self.pos_eps
        return self.squared_violation(pos_pair_dist, pos_factor * torch.mean(pos_pair_dist))

    def neg_factor(self):
        # A similarity should stay below (1 + ε⁻)μ⁻; a distance above (1 - ε⁻)μ⁻.
        return 1 + self.neg_eps if self.distance.is_inverted else 1 - self.neg_eps

    def squared_violation(self, farther, closer):
        """[how much `farther` is farther than `closer`]_+²."""
        return torch.relu(self.distance.margin(farther, closer)) ** 2

    @staticmethod
    def loss_dict(pos_loss, neg_loss, indices_tuple):
        return {
            "pos_loss": {
                "losses": pos_loss,
                "indices": indices_tuple[:2],
                "reduction_type": "pos_pair",
            },
            "neg_loss": {
                "losses": neg_loss,
                "indices": indices_tuple[2:],
                "reduction_type": "neg_pair",
            },
        }

    def _sub_loss_names(self):
        return ["pos_loss", "neg_loss"]

    def get_default_distance(self):
        return CosineSimilarity()


class _SquaredViolationOfScaledMean(torch.autograd.Function):
    """[s − f μ]_+² for similarities s, or [f μ − d]_+² for distances d, for every value of a
    tensor whose mean is μ (the negative pairs' loss, gradients through μ included).

    Forward writes two tensors of the values' size (the hinge and the losses) and backward
    one; autograd through mean, subtraction, relu and square writes about six.
    """

    @staticmethod
    def forward(ctx, values, factor, is_inverted):
        hinge = values - factor * values.mean()
        if not is_inverted:
            hinge.neg_()
        hinge.clamp_min_(0)
        ctx.factor, ctx.is_inverted = factor, is_inverted
        ctx.save_for_backward(hinge)
        return hinge.square()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_losses):
        (hinge,) = ctx.saved_tensors
        grad = hinge * grad_losses
        grad.mul_(2)
        # Through μ every value also moves the threshold of all the others.
        grad.sub_(ctx.factor * grad.mean())
        if not ctx.is_inverted:
            grad.neg_()
        return grad, None, None
