"""PML's import path `utils.module_with_records_and_reducer` gives the same classes, which hold
a reducer (one per sub-loss) and a distance."""

import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.reducers import MeanReducer, MultipleReducers, SumReducer
from metric_runner.utils import module_with_records
from metric_runner.utils.module_with_records_and_reducer import (
    ModuleWithRecords,
    ModuleWithRecordsAndDistance,
    ModuleWithRecordsAndReducer,
    ModuleWithRecordsReducerAndDistance,
)


def test_same_classes_as_module_with_records():
    assert ModuleWithRecords is module_with_records.ModuleWithRecords
    assert ModuleWithRecordsAndReducer is module_with_records.ModuleWithRecordsAndReducer
    assert (
        ModuleWithRecordsReducerAndDistance
        is module_with_records.ModuleWithRecordsReducerAndDistance
    )


class TwoSubLosses(ModuleWithRecordsReducerAndDistance):
    def sub_loss_names(self):
        return ["pos_loss", "neg_loss"]


def test_reducer_per_sub_loss_and_distance_defaults():
    module = TwoSubLosses(reducer=SumReducer())
    assert isinstance(module.reducer, MultipleReducers)
    assert set(module.reducer.reducers) == {"pos_loss", "neg_loss"}
    assert all(isinstance(r, SumReducer) for r in module.reducer.reducers.values())
    assert isinstance(module.distance, LpDistance) and module.distance.p == 2
    assert isinstance(ModuleWithRecordsAndReducer().reducer, MeanReducer)
    cosine = CosineSimilarity()
    assert ModuleWithRecordsAndDistance(distance=cosine).distance is cosine
    losses = {
        "loss": {
            "losses": torch.tensor([1.0, 3.0]),
            "indices": torch.arange(2),
            "reduction_type": "element",
        }
    }
    reduced = ModuleWithRecordsAndReducer().reducer(losses, torch.zeros(2, 1), torch.zeros(2))
    assert float(reduced) == 2.0
