import abc

from ..utils import common_functions as c_f
from ..utils.module_with_records import ModuleWithRecordsReducerAndDistance


class BaseRegularizer(ModuleWithRecordsReducerAndDistance, abc.ABC):
    """regularizer(x) -> scalar, for embeddings (a loss's `embedding_regularizer`) or class
    weights / proxies, one per row (a loss's `weight_regularizer`).

    Subclasses implement `compute_loss(x)`, which returns a loss dict; the reducer turns it into
    the scalar, with row i labelled i.
    """

    def forward(self, x):
        self.reset_stats()
        if x.ndim != 2:
            raise ValueError(
                f"{type(self).__name__} regularizes rows: x must be 2D (num_rows, size), got "
                f"shape {tuple(x.shape)}."
            )
        loss_dict = self.compute_loss(x)
        return self.reducer(loss_dict, x, c_f.torch_arange_from_size(x))

    @abc.abstractmethod
    def compute_loss(self, x):
        """{"loss": {"losses", "indices", "reduction_type"}} for the rows of x."""

    @staticmethod
    def element_loss(losses, x):
        return {
            "loss": {
                "losses": losses,
                "indices": c_f.torch_arange_from_size(x),
                "reduction_type": "element",
            }
        }
