import math

import torch

from ..utils import common_functions as c_f
from .arcface_loss import ArcFaceLoss


class SubCenterArcFaceLoss(ArcFaceLoss):
    """Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-Scale Noisy Web
    Faces", ECCV 2020.

    ArcFace in which each class has `sub_centers` weight vectors and cos θ_j is the largest
    cosine to any of class j's sub-centers. `W` has shape (embedding_size,
    num_classes·sub_centers); class j owns columns j·sub_centers ... (j+1)·sub_centers - 1.
    """

    def __init__(self, *args, margin=28.6, scale=64, sub_centers=3, **kwargs):
        self.check_positive_int("sub_centers", sub_centers)
        # Set before the base initializer, which sizes W from it.
        self.sub_centers = sub_centers
        super().__init__(*args, margin=margin, scale=scale, **kwargs)
        self.add_to_recordable_attributes(name="sub_centers", is_stat=False)

    def num_weight_columns(self):
        return self.num_classes * self.sub_centers

    def get_logits(self, embeddings):
        """s·cos θ_j with θ_j the angle to class j's nearest sub-center, (N, num_classes)."""
        return (
            self.scaled_cosine(embeddings)
            .view(-1, self.num_classes, self.sub_centers)
            .max(dim=2)
            .values
        )

    def get_outliers(self, embeddings, labels, threshold=75, return_dominant_centers=True):
        """Samples farther than `threshold` degrees from their class's dominant sub-center (the
        one nearest to most of the class's samples), as the paper uses to drop noisy labels.

        Returns the outliers' indices grouped by class (then by position), and, when
        `return_dominant_centers`, the (embedding_size, num_classes) dominant sub-centers; a
        class without samples gets its first sub-center.
        """
        c_f.check_shapes(embeddings, labels)
        labels = labels.to(embeddings.device)
        labels = self.checked_labels(embeddings, labels, embeddings)
        with torch.no_grad():
            sub_center_cosines = self.scaled_cosine(embeddings).view(
                -1, self.num_classes, self.sub_centers
            )
            cosines = (
                sub_center_cosines[c_f.torch_arange_from_size(embeddings), labels] / self.scale
            )
            nearest = cosines.argmax(dim=1)
            votes = torch.zeros(self.num_classes, self.sub_centers, device=labels.device)
            votes.index_put_(
                (labels, nearest), torch.ones_like(labels, dtype=votes.dtype), accumulate=True
            )
            dominant = votes.argmax(dim=1)
            cosine_to_dominant = cosines.gather(1, dominant[labels].unsqueeze(1)).squeeze(1)
            outliers = torch.where(cosine_to_dominant < math.cos(math.radians(threshold)))[0]
            outliers = outliers[torch.argsort(labels[outliers], stable=True)]
            if not return_dominant_centers:
                return outliers
            centers = (
                self.cast_weight_like(self.W, embeddings)
                .t()
                .view(self.num_classes, self.sub_centers, -1)
            )
            dominant_centers = centers[
                torch.arange(self.num_classes, device=labels.device), dominant
            ].t()
        return outliers, dominant_centers
