import torch
from torch.utils.data import Sampler

from ..utils.errors import InvalidArgumentError
from .m_per_class_sampler import epoch_generator, group_by_label, random_subsets


class FixedSetOfTriplets(Sampler):
    """A fixed set of `num_triplets` random triplets, drawn once, yielded as consecutive
    (anchor, positive, negative) indices in a new random triplet order every epoch.

    Each triplet picks a class uniformly, two distinct samples of it (the same one twice for a
    singleton class), then a different class uniformly and one of its samples as the negative.
    Pair it with `miners.EmbeddingsAlreadyPackagedAsTriplets`. Randomness comes from
    `c_f.NUMPY_RANDOM` (see epoch_generator).
    """

    def __init__(self, labels, num_triplets):
        sorted_indices, class_counts, class_offsets = group_by_label(labels)
        num_classes = len(class_counts)
        if num_classes < 2:
            raise InvalidArgumentError(
                f"FixedSetOfTriplets needs at least 2 classes to draw negatives, got {num_classes}."
            )
        if int(num_triplets) != num_triplets or num_triplets < 1:
            raise InvalidArgumentError(
                f"num_triplets must be a positive integer, got {num_triplets}"
            )
        self.num_triplets = int(num_triplets)
        generator = epoch_generator()
        anchor_class = torch.randint(num_classes, (self.num_triplets,), generator=generator)
        anchor_positive = random_subsets(class_counts[anchor_class], 2, generator)
        # A uniform class among the others: draw from num_classes - 1 and skip the anchor's.
        negative_class = torch.randint(num_classes - 1, (self.num_triplets,), generator=generator)
        negative_class += (negative_class >= anchor_class).long()
        negative = (
            torch.rand(self.num_triplets, dtype=torch.float64, generator=generator)
            * class_counts[negative_class]
        ).long()
        positions = torch.cat([anchor_positive, negative.unsqueeze(1)], dim=1)
        offsets = class_offsets[torch.stack([anchor_class, anchor_class, negative_class], dim=1)]
        self.fixed_set_of_triplets = sorted_indices[offsets + positions]

    def __len__(self):
        return 3 * self.num_triplets

    def __iter__(self):
        order = torch.randperm(self.num_triplets, generator=epoch_generator())
        return iter(self.fixed_set_of_triplets[order].flatten().tolist())
