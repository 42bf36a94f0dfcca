import numpy as np
import torch

from ..distances import LpDistance
from ..utils import loss_and_miner_utils as lmu
from ..utils.errors import InvalidArgumentError
from .base_miner import BaseMiner


class AngularMiner(BaseMiner):
    """Triplets whose angle at the negative exceeds `angle` degrees (Wang et al., "Deep Metric
    Learning with Angular Loss", ICCV 2017): tan(angle_n) = ||x_a - x_p|| / (2 ||x_n - x_c||),
    with x_c = (x_a + x_p) / 2, measured on the embeddings as given. Returns triplets (a, p, n).
    """

    def __init__(self, angle=20, **kwargs):
        super().__init__(**kwargs)
        check_euclidean_distance(self.distance, type(self).__name__)
        self.angle = np.radians(angle)
        self.add_to_recordable_attributes(name="angle", is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=[
                "average_angle",
                "average_angle_above_threshold",
                "average_angle_below_threshold",
                "min_angle",
                "max_angle",
                "std_of_angle",
            ],
            is_stat=True,
        )

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        pos_mask, neg_mask = lmu.get_matches_and_diffs(
            labels, self.ref_labels_or_none(embeddings, ref_emb, ref_labels)
        )
        # One row per positive pair against every reference: #pos pairs × M, never N×M×M.
        a, p = torch.where(pos_mask)
        anchors, positives = embeddings[a], ref_emb[p]
        ap_dist = self.distance.get_norm(anchors - positives).unsqueeze(1)
        centers = (anchors + positives) / 2
        nc_dist = self.distance.compute_mat(centers, ref_emb)
        angles = torch.atan(ap_dist / (2 * nc_dist))
        valid = neg_mask[a]
        pair_idx, n = torch.where(valid & (angles > self.angle))
        if self.collect_stats:
            self.set_stats(angles[valid])
        return a[pair_idx], p[pair_idx], n

    def set_stats(self, angles):
        """Statistics in degrees over every triplet of the batch."""
        if len(angles) == 0:
            return
        degrees = torch.rad2deg(angles.double())
        above = degrees > np.degrees(self.angle)
        self.average_angle = degrees.mean().item()
        self.min_angle = degrees.min().item()
        self.max_angle = degrees.max().item()
        self.std_of_angle = degrees.std().item() if len(degrees) > 1 else 0
        if above.any():
            self.average_angle_above_threshold = degrees[above].mean().item()
        if not above.all():
            self.average_angle_below_threshold = degrees[~above].mean().item()


def check_euclidean_distance(distance, miner_name):
    """Miners whose formulas live on the unit sphere need plain normalized L2 distances."""
    if type(distance) is not LpDistance:
        raise InvalidArgumentError(
            f"{miner_name} requires the distance to be LpDistance, got {type(distance).__name__}."
        )
    for name, required in (("normalize_embeddings", True), ("p", 2), ("power", 1)):
        if getattr(distance, name) != required:
            raise InvalidArgumentError(
                f"{miner_name} requires distance.{name} to be {required}, "
                f"got {getattr(distance, name)}; use LpDistance(normalize_embeddings=True, p=2, power=1)."
            )
