import torch

from ..reducers import DivisorReducer
from ..utils import loss_and_miner_utils as lmu
from .base_metric_loss_function import BaseMetricLossFunction


class MarginLoss(BaseMetricLossFunction):
    """Margin loss (Wu et al., "Sampling Matters in Deep Embedding Learning", ICCV 2017), per
    triplet: [d_ap − β + margin]_+ + [β − d_an + margin]_+ (sign-flipped for similarities),
    summed and divided by the number of non-zero terms.

    β is one value, or one per class (`num_classes`), learnable with `learn_beta`; then
    ν·β is added as a regularizer (`nu`).
    """

    def __init__(
        self,
        margin=0.2,
        nu=0,
        beta=1.2,
        triplets_per_anchor="all",
        learn_beta=False,
        num_classes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if triplets_per_anchor != "all" and not (
            isinstance(triplets_per_anchor, int) and triplets_per_anchor >= 0
        ):
            raise ValueError(
                f'triplets_per_anchor must be "all" or an integer >= 0, got {triplets_per_anchor!r}'
            )
        self.margin = margin
        self.nu = nu
        self.learn_beta = learn_beta
        self.num_classes = num_classes
        self.triplets_per_anchor = triplets_per_anchor
        initial_beta = torch.full((num_classes or 1,), float(beta))
        if learn_beta:
            self.beta = torch.nn.Parameter(initial_beta)
        else:
            self.register_buffer("beta", initial_beta, persistent=False)
        self.add_to_recordable_attributes(list_of_names=["margin", "nu", "beta"], is_stat=False)

    def check_labels_available(self, labels, indices_tuple):
        super().check_labels_available(labels, indices_tuple)
        if labels is None and self.num_classes is not None:
            raise ValueError("MarginLoss with num_classes needs labels to pick each anchor's beta.")

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        same_set = ref_emb is embeddings
        mat = self.distance(embeddings, None if same_set else ref_emb)
        beta = self.beta.to(device=mat.device, dtype=mat.dtype)
        if indices_tuple is None and self.triplets_per_anchor == "all":
            triplets = self.all_triplet_terms(mat, labels, None if same_set else ref_labels, beta)
        else:
            indices_tuple = lmu.convert_to_triplets(
                indices_tuple,
                labels,
                None if same_set else ref_labels,
                t_per_anchor=self.triplets_per_anchor,
            )
            triplets = self.listed_triplet_terms(mat, labels, indices_tuple, beta)
        if triplets is None:
            return self.zero_losses()
        indices, pos_loss, neg_loss, anchor_beta = triplets
        divisor = torch.sum(pos_loss > 0) + torch.sum(neg_loss > 0)
        return {
            "margin_loss": {
                "losses": pos_loss + neg_loss,
                "indices": indices,
                "reduction_type": "triplet",
                "divisor": divisor,
            },
            "beta_reg_loss": self.beta_regularization(anchor_beta, indices[0], divisor),
        }

    def listed_triplet_terms(self, mat, labels, indices_tuple, beta):
        anchor_idx, positive_idx, negative_idx = indices_tuple
        if len(anchor_idx) == 0:
            return None
        anchor_beta = self.beta_of(beta, labels, anchor_idx)
        pos_loss = torch.relu(
            self.distance.margin(mat[anchor_idx, positive_idx], anchor_beta) + self.margin
        )
        neg_loss = torch.relu(
            self.distance.margin(anchor_beta, mat[anchor_idx, negative_idx]) + self.margin
        )
        return indices_tuple, pos_loss, neg_loss, anchor_beta

    def all_triplet_terms(self, mat, labels, ref_labels, beta):
        """Every (a, p, n) as a (#positive pairs × M) grid masked by the anchor's negatives: the
        positive term is per pair and the negative term per (anchor, n), so no triplet index
        list is needed to compute them; the flattened order is that of get_all_triplets_indices."""
        matches, diffs = lmu.get_matches_and_diffs(labels, ref_labels)
        anchor_idx, positive_idx = torch.where(matches)
        triplet_mask = diffs[anchor_idx]
        if not torch.any(triplet_mask):
            return None
        pair_beta = self.beta_of(beta, labels, anchor_idx)
        pair_pos_loss = torch.relu(
            self.distance.margin(mat[anchor_idx, positive_idx], pair_beta) + self.margin
        )
        grid_neg_loss = torch.relu(
            self.distance.margin(pair_beta.unsqueeze(1), mat[anchor_idx]) + self.margin
        )
        pair_idx, negative_idx = torch.where(triplet_mask)
        indices = (anchor_idx[pair_idx], positive_idx[pair_idx], negative_idx)
        anchor_beta = pair_beta[pair_idx] if self.num_classes is not None else pair_beta
        return indices, pair_pos_loss[pair_idx], grid_neg_loss[triplet_mask], anchor_beta

    def beta_of(self, beta, labels, anchor_idx):
        return beta[labels[anchor_idx]] if self.num_classes is not None else beta

    def beta_regularization(self, anchor_beta, anchor_idx, divisor):
        if not self.learn_beta:
            return self.zero_loss()
        if self.num_classes is None:
            return {
                "losses": anchor_beta[0] * self.nu,
                "indices": None,
                "reduction_type": "already_reduced",
            }
        return {
            "losses": anchor_beta * self.nu,
            "indices": anchor_idx,
            "reduction_type": "element",
            "divisor": divisor,
        }

    def _sub_loss_names(self):
        return ["margin_loss", "beta_reg_loss"]

    def get_default_reducer(self):
        return DivisorReducer()
