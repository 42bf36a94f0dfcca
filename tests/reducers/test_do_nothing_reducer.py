from metric_runner.reducers import DoNothingReducer
from metric_runner.utils import loss_and_miner_utils as lmu
from tests.reducers.reducer_helpers import ANCHORS, LABELS, POSITIVES, embeddings, loss_dict, losses


def test_returns_the_loss_dict_unreduced():
    sub_losses = {**loss_dict(losses(), "triplet"), **loss_dict(losses(), "element", name="reg")}
    assert DoNothingReducer()(sub_losses, embeddings(), LABELS) is sub_losses


def test_lazy_indices_are_built_into_tuples():
    built = []
    lazy = lmu.LazyIndexTuple(
        [lambda: built.append(0) or ANCHORS, lambda: built.append(1) or POSITIVES], [6, 6]
    )
    sub_losses = loss_dict(losses(), "pos_pair", indices=lazy)
    out = DoNothingReducer()(sub_losses, embeddings(), LABELS)
    assert out is sub_losses and set(out["loss"]) == {"losses", "indices", "reduction_type"}
    assert isinstance(out["loss"]["indices"], tuple) and built == [0, 1]
    assert out["loss"]["indices"][1] is POSITIVES
