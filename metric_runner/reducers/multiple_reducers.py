import torch

from .base_reducer import BaseReducer
from .mean_reducer import MeanReducer


class MultipleReducers(BaseReducer):
    """One reducer per named sub-loss (a default for unnamed ones); the results are summed."""

    def __init__(self, reducers, default_reducer=None, **kwargs):
        super().__init__(**kwargs)
        self.reducers = torch.nn.ModuleDict(reducers)
        self.default_reducer = MeanReducer() if default_reducer is None else default_reducer

    def forward(self, loss_dict, embeddings, labels):
        self.reset_stats()
        total = 0
        for name, loss_info in loss_dict.items():
            reducer = self.reducers[name] if name in self.reducers else self.default_reducer
            total = total + reducer({name: loss_info}, embeddings, labels)
        return total

    def reset_stats(self):
        super().reset_stats()
        for reducer in self.reducers.values():
            reducer.reset_stats()
        self.default_reducer.reset_stats()
