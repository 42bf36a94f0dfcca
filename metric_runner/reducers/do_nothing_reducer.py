from ..utils import loss_and_miner_utils as lmu
from .base_reducer import BaseReducer


class DoNothingReducer(BaseReducer):
    """Returns the loss dict unreduced, for code that wants the per-tuple losses, with the
    entries PML's losses give: lazily built indices are built here into real tuples (listed in
    lexicographic order, as PML lists all pairs and triplets)."""

    def forward(self, loss_dict, embeddings, labels):
        for loss_info in loss_dict.values():
            indices = loss_info.get("indices")
            if isinstance(indices, lmu.LazyIndexTuple):
                order = indices.lexicographic_order()
                indices = tuple(indices)
                if order is not None:
                    indices = tuple(x[order] for x in indices)
                    loss_info["losses"] = loss_info["losses"][order]
                loss_info["indices"] = indices
        return loss_dict
