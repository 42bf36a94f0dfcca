"""Base modules that record statistics (for loggers such as record-keeper) and hold a
reducer and/or a distance."""

import copy

import torch

from . import common_functions as c_f


class ModuleWithRecords(torch.nn.Module):
    """A module whose listed attributes are picked up by loggers.

    `_record_these` names the recordable settings (margin, p, ...); `_record_these_stats` names
    the statistics, which exist only when `collect_stats` is on and are reset to zero at each
    forward call. A logger reads both lists, so a name lives in exactly one of them. A listed
    attribute that does not exist yet starts at 0, as in PML.
    """

    def __init__(self, collect_stats=None):
        super().__init__()
        self.collect_stats = c_f.COLLECT_STATS if collect_stats is None else collect_stats

    def add_to_recordable_attributes(self, name=None, list_of_names=None, is_stat=False):
        if is_stat and not self.collect_stats:
            return
        c_f.add_to_recordable_attributes(self, name, list_of_names, is_stat)

    def reset_stats(self):
        c_f.reset_stats(self)


class ModuleWithRecordsAndReducer(ModuleWithRecords):
    def __init__(self, reducer=None, **kwargs):
        super().__init__(**kwargs)
        self.set_reducer(reducer)

    def get_default_reducer(self):
        from ..reducers import MeanReducer

        return MeanReducer()

    def sub_loss_names(self):
        return ["loss"]

    def set_reducer(self, reducer):
        """One reducer per sub-loss: a single reducer is copied to each sub-loss."""
        from ..reducers import DoNothingReducer, MultipleReducers

        if isinstance(reducer, (MultipleReducers, DoNothingReducer)):
            self.reducer = reducer
            return
        names = self.sub_loss_names()
        if len(names) == 1:
            self.reducer = self.get_default_reducer() if reducer is None else copy.deepcopy(reducer)
            return
        self.reducer = MultipleReducers(
            {
                name: self.get_default_reducer() if reducer is None else copy.deepcopy(reducer)
                for name in names
            }
        )

    def reset_stats(self):
        super().reset_stats()
        self.reducer.reset_stats()


class ModuleWithRecordsAndDistance(ModuleWithRecords):
    def __init__(self, distance=None, **kwargs):
        super().__init__(**kwargs)
        self.distance = self.get_default_distance() if distance is None else distance

    def get_default_distance(self):
        from ..distances import LpDistance

        return LpDistance(p=2)

    def reset_stats(self):
        super().reset_stats()
        self.distance.reset_stats()


class ModuleWithRecordsReducerAndDistance(
    ModuleWithRecordsAndReducer, ModuleWithRecordsAndDistance
):
    """Holds both; the distance is set before the reducer because a loss's default reducer
    and sub-loss names may depend on it."""

    def __init__(self, distance=None, reducer=None, **kwargs):
        ModuleWithRecordsAndDistance.__init__(self, distance=distance, **kwargs)
        self.set_reducer(reducer)
