from metric_runner.reducers import DoNothingReducer
from tests.reducers.reducer_helpers import LABELS, embeddings, loss_dict, losses


def test_returns_the_loss_dict_unreduced():
    sub_losses = {**loss_dict(losses(), "triplet"), **loss_dict(losses(), "element", name="reg")}
    assert DoNothingReducer()(sub_losses, embeddings(), LABELS) is sub_losses
