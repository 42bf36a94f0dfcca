import torch

from ..distances import CosineSimilarity
from ..reducers import DivisorReducer
from ..utils import common_functions as c_f
from ..utils.errors import InvalidArgumentError
from .base_regularizer import BaseRegularizer


class SparseCentersRegularizer(BaseRegularizer):
    """Lets the centers of a class merge (SoftTriple, Qian et al., ICCV 2019, eq. 11):
    R = sum_c sum_{t<s} sqrt(2 - 2 s(w_c^t, w_c^s)) / (C K (K - 1)) for C classes of K centers.

    Rows of the weight matrix are the centers, class by class: rows c·K ... c·K + K - 1 belong
    to class c. The distance must be CosineSimilarity; the default reducer is DivisorReducer.
    """

    def __init__(self, num_classes, centers_per_class, **kwargs):
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
        similarities = self.distance(weights)
        rows, cols = self.same_class_pairs(weights.device)
        squared_dist = (2 - 2 * similarities[rows, cols]).clamp(min=0)
        # sqrt has an infinite slope at 0: identical centers get a zero loss and zero gradient.
        is_positive = squared_dist > 0
        safe_squared_dist = torch.where(is_positive, squared_dist, torch.ones_like(squared_dist))
        losses = torch.where(
            is_positive, torch.sqrt(safe_squared_dist), torch.zeros_like(squared_dist)
        )
        if self.collect_stats:
            self.set_stats(similarities)
        return {
            "loss": {
                "losses": losses,
                "indices": c_f.torch_arange_from_size(losses),
                "reduction_type": "element",
                "divisor": num_centers * (self.centers_per_class - 1),
            }
        }

    def same_class_pairs(self, device):
        """(rows, cols) of every pair t < s of centers of the same class, class by class."""
        first, second = torch.triu_indices(
            self.centers_per_class, self.centers_per_class, 1, device=device
        )
        class_offsets = (
            torch.arange(self.num_classes, device=device).unsqueeze(1) * self.centers_per_class
        )
        return (class_offsets + first).flatten(), (class_offsets + second).flatten()

    def set_stats(self, similarities):
        with torch.no_grad():
            center_classes = torch.arange(self.num_classes, device=similarities.device)
            center_classes = center_classes.repeat_interleave(self.centers_per_class)
            same_class = center_classes.unsqueeze(1) == center_classes.unsqueeze(0)
            same_class.fill_diagonal_(False)
            diff_class = center_classes.unsqueeze(1) != center_classes.unsqueeze(0)
            self.same_class_center_sim = torch.mean(similarities[same_class]).item()
            self.diff_class_center_sim = (
                torch.mean(similarities[diff_class]).item() if self.num_classes > 1 else 0
            )
