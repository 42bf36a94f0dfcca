import torch

from ..distances import CosineSimilarity
from ..reducers import DivisorReducer
from ..utils import common_functions as c_f
from ..utils.errors import InvalidArgumentError
from .base_regularizer import BaseRegularizer

# The cross-class similarity statistic has no closed form for a power other than 1; it is then
# summed over blocks of rows whose (rows, num_centers) similarities hold at most this many entries.
STATS_BLOCK_ENTRIES = 2**24


class SparseCentersRegularizer(BaseRegularizer):
    """Lets the centers of a class merge (SoftTriple, Qian et al., ICCV 2019, eq. 11):
    R = sum_c sum_{t<s} sqrt(2 - 2 s(w_c^t, w_c^s)) / (C K (K - 1)) for C classes of K centers.

    Rows of the weight matrix are the centers, class by class: rows c·K ... c·K + K - 1 belong
    to class c. The distance must be CosineSimilarity; the default reducer is DivisorReducer.
    Only the C (K, K) blocks of same-class similarities are built, never the (CK, CK) matrix:
    C·K² entries (1.1e6 for SOP's 11,318 classes x 10 centers instead of 1.3e10).
    """

    def __init__(self, num_classes: int, centers_per_class: int, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise InvalidArgumentError(f"num_classes must be at least 1, got {num_classes}")
        if centers_per_class < 2:
            raise InvalidArgumentError(
                f"centers_per_class must be at least 2 (there is nothing to merge with one "
                f"center per class), got {centers_per_class}"
            )
        c_f.assert_distance_type(self, CosineSimilarity)
        self.num_classes = num_classes
        self.centers_per_class = centers_per_class
        self.add_to_recordable_attributes(
            list_of_names=["num_classes", "centers_per_class"], is_stat=False
        )
        self.add_to_recordable_attributes(
            list_of_names=["same_class_center_sim", "diff_class_center_sim"], is_stat=True
        )

    def get_default_distance(self):
        return CosineSimilarity()

    def get_default_reducer(self):
        return DivisorReducer()

    def compute_loss(self, weights):
        num_centers = self.num_classes * self.centers_per_class
        if len(weights) != num_centers:
            raise InvalidArgumentError(
                f"SparseCentersRegularizer expects num_classes * centers_per_class = {num_centers} "
                f"rows (one per center), got {len(weights)}; pass the centers as rows."
            )
        centers = self.normalized_centers(weights)
        block_similarities = self.same_class_similarities(centers)
        first, second = torch.triu_indices(
            self.centers_per_class, self.centers_per_class, 1, device=weights.device
        )
        pair_similarities = block_similarities[:, first, second].flatten()
        squared_dist = (2 - 2 * pair_similarities).clamp(min=0)
        # sqrt has an infinite slope at 0: identical centers get a zero loss and zero gradient.
        is_positive = squared_dist > 0
        safe_squared_dist = torch.where(is_positive, squared_dist, torch.ones_like(squared_dist))
        losses = torch.where(
            is_positive, torch.sqrt(safe_squared_dist), torch.zeros_like(squared_dist)
        )
        if self.collect_stats:
            self.set_stats(centers, block_similarities, pair_similarities)
        return {
            "loss": {
                "losses": losses,
                "indices": c_f.torch_arange_from_size(losses),
                "reduction_type": "element",
                "divisor": num_centers * (self.centers_per_class - 1),
            }
        }

    def normalized_centers(self, weights):
        """The distance's normalized rows; its norm statistics are recorded as when it is
        called on the whole matrix, which this regularizer no longer builds."""
        self.distance.reset_stats()
        centers = self.distance.maybe_normalize(weights)
        self.distance.set_default_stats(weights, None, centers, centers)
        return centers

    def same_class_similarities(self, centers):
        """(C, K, K): the similarities among each class's centers, one batched matmul (the
        distance's compute_mat takes 2-D rows only), raised to the distance's power."""
        by_class = centers.view(self.num_classes, self.centers_per_class, -1)
        similarities = torch.matmul(by_class, by_class.transpose(1, 2))
        power = self.distance.power
        return similarities if power == 1 else similarities**power

    def set_stats(self, centers, block_similarities, pair_similarities):
        with torch.no_grad():
            self.same_class_center_sim = torch.mean(pair_similarities).item()
            num_centers = len(centers)
            num_diff_class_pairs = num_centers**2 - self.num_classes * self.centers_per_class**2
            diff_class_sum = self.sum_of_all_similarities(centers) - block_similarities.sum()
            self.diff_class_center_sim = (
                (diff_class_sum / num_diff_class_pairs).item() if num_diff_class_pairs else 0
            )

    def sum_of_all_similarities(self, centers):
        """The sum over all (i, j) of s(w_i, w_j), without the (CK, CK) matrix: for cosines,
        sum_ij u_i·u_j = |sum_i u_i|²; a power other than 1 sums blocks of rows."""
        if self.distance.power == 1:
            return centers.sum(dim=0).square().sum()
        rows_per_block = max(1, STATS_BLOCK_ENTRIES // len(centers))
        return sum(
            (torch.matmul(block, centers.t()) ** self.distance.power).sum()
            for block in centers.split(rows_per_block)
        )
