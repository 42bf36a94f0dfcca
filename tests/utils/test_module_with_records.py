import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.reducers import (
    AvgNonZeroReducer,
    DoNothingReducer,
    MeanReducer,
    MultipleReducers,
)
from metric_runner.utils import common_functions as c_f
from metric_runner.utils.module_with_records import (
    ModuleWithRecords,
    ModuleWithRecordsAndDistance,
    ModuleWithRecordsAndReducer,
    ModuleWithRecordsReducerAndDistance,
)


def test_settings_and_stats_go_to_separate_lists():
    module = ModuleWithRecords(collect_stats=True)
    module.add_to_recordable_attributes(list_of_names=["margin", "scale"])
    module.add_to_recordable_attributes(name="num_pairs", is_stat=True)
    module.add_to_recordable_attributes(name="margin")
    assert module._record_these == ["margin", "scale"]
    # A logger reads both lists, so a stat listed in both would be logged twice.
    assert module._record_these_stats == ["num_pairs"]
    assert module.num_pairs == 0


def test_stats_are_skipped_without_collect_stats():
    module = ModuleWithRecords(collect_stats=False)
    module.add_to_recordable_attributes(name="num_pairs", is_stat=True)
    assert not hasattr(module, "_record_these_stats") and not hasattr(module, "num_pairs")


def test_reset_stats_zeroes_stats_only():
    module = ModuleWithRecords(collect_stats=True)
    module.add_to_recordable_attributes(name="margin")
    module.add_to_recordable_attributes(name="num_pairs", is_stat=True)
    module.margin, module.num_pairs = 0.2, 17
    module.reset_stats()
    assert (module.margin, module.num_pairs) == (0.2, 0)


@pytest.mark.parametrize("switch", [True, False])
def test_collect_stats_follows_the_global_switch(monkeypatch, switch):
    monkeypatch.setattr(c_f, "COLLECT_STATS", switch)
    assert ModuleWithRecords().collect_stats is switch
    assert ModuleWithRecords(collect_stats=not switch).collect_stats is (not switch)


class TwoSubLosses(ModuleWithRecordsAndReducer):
    def sub_loss_names(self):
        return ["pos_loss", "neg_loss"]


def test_default_reducer_is_a_mean():
    assert isinstance(ModuleWithRecordsAndReducer().reducer, MeanReducer)


def test_a_given_reducer_is_copied_not_shared():
    reducer = AvgNonZeroReducer()
    module = ModuleWithRecordsAndReducer(reducer=reducer)
    assert isinstance(module.reducer, AvgNonZeroReducer) and module.reducer is not reducer


def test_several_sub_losses_get_one_reducer_each():
    module = TwoSubLosses(reducer=AvgNonZeroReducer())
    assert isinstance(module.reducer, MultipleReducers)
    assert sorted(module.reducer.reducers) == ["neg_loss", "pos_loss"]
    assert module.reducer.reducers["pos_loss"] is not module.reducer.reducers["neg_loss"]
    assert all(isinstance(r, AvgNonZeroReducer) for r in module.reducer.reducers.values())


@pytest.mark.parametrize(
    "reducer", [DoNothingReducer(), MultipleReducers({"pos_loss": MeanReducer()})]
)
def test_do_nothing_and_multiple_reducers_are_kept_as_given(reducer):
    assert TwoSubLosses(reducer=reducer).reducer is reducer


def test_default_distance_is_euclidean():
    distance = ModuleWithRecordsAndDistance().distance
    assert isinstance(distance, LpDistance) and distance.p == 2 and distance.power == 1


class SubLossesFromDistance(ModuleWithRecordsReducerAndDistance):
    """Sub-loss names that depend on the distance: it must be set before the reducer."""

    def sub_loss_names(self):
        return ["loss", "sim_loss"] if self.distance.is_inverted else ["loss"]


def test_reducer_and_distance_module_holds_both():
    module = SubLossesFromDistance(distance=CosineSimilarity())
    assert isinstance(module, ModuleWithRecordsAndReducer)
    assert isinstance(module, ModuleWithRecordsAndDistance)
    assert isinstance(module.reducer, MultipleReducers)
    assert isinstance(SubLossesFromDistance().reducer, MeanReducer)


def test_reset_stats_reaches_reducer_and_distance():
    module = SubLossesFromDistance(
        distance=LpDistance(collect_stats=True),
        reducer=MeanReducer(collect_stats=True),
        collect_stats=True,
    )
    module.distance(torch.ones(2, 3))
    module.reducer(
        {
            "loss": {
                "losses": torch.ones(4),
                "indices": torch.arange(4),
                "reduction_type": "element",
            }
        },
        None,
        None,
    )
    assert module.distance.initial_avg_query_norm > 0 and module.reducer.losses_size == 4
    module.reset_stats()
    assert module.distance.initial_avg_query_norm == 0 and module.reducer.losses_size == 0
