import torch

from .base_reducer import BaseReducer
from .mean_reducer import MeanReducer


class MultipleReducers(BaseReducer):
    """One reducer per named sub-loss (`default_reducer`, a MeanReducer unless given, for the
    others); the reduced sub-losses are summed."""

    def __init__(self, reducers, default_reducer=None, **kwargs):
        super().__init__(**kwargs)
        self.reducers = torch.nn.ModuleDict(reducers)
        self.default_reducer = MeanReducer() if default_reducer is None else default_reducer

    def forward(self, loss_dict, embeddings, labels):
        self.reset_stats()
        if len(loss_dict) == 0:
            return self.zero_loss(embeddings)
        sub_losses = [
            self.reducer_for(name)({name: loss_info}, embeddings, labels)
            for name, loss_info in loss_dict.items()
        ]
        return self.sub_loss_reduction(sub_losses, embeddings, labels)

    def reducer_for(self, name):
        return self.reducers[name] if name in self.reducers else self.default_reducer

    def sub_loss_reduction(self, sub_losses, embeddings=None, labels=None):
        return sum(sub_losses)

    def reset_stats(self):
        super().reset_stats()
        for reducer in self.reducers.values():
            reducer.reset_stats()
        self.default_reducer.reset_stats()
