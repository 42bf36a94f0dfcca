import pytest
import torch

from metric_runner.reducers import DoNothingReducer, SumReducer
from metric_runner.regularizers import BaseRegularizer


class RowMaxRegularizer(BaseRegularizer):
    """A minimal user-defined regularizer: l_i = max_j x_ij."""

    def compute_loss(self, x):
        return {
            "loss": {
                "losses": x.max(dim=1).values,
                "indices": torch.arange(len(x)),
                "reduction_type": "element",
            }
        }


def test_base_class_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        BaseRegularizer()


def test_subclass_losses_are_reduced_by_the_reducer():
    rows = torch.tensor([[1.0, 3.0], [2.0, -1.0]])
    assert RowMaxRegularizer()(rows).item() == pytest.approx(2.5)
    assert RowMaxRegularizer(reducer=SumReducer())(rows).item() == pytest.approx(5.0)


def test_reducer_sees_rows_labelled_by_their_index():
    seen = {}

    class SpyReducer(DoNothingReducer):
        def forward(self, loss_dict, embeddings, labels):
            seen["labels"] = labels
            return loss_dict

    RowMaxRegularizer(reducer=SpyReducer())(torch.ones(4, 2))
    assert seen["labels"].tolist() == [0, 1, 2, 3]


def test_default_distance_and_reducer():
    regularizer = RowMaxRegularizer()
    assert type(regularizer.distance).__name__ == "LpDistance"
    assert type(regularizer.reducer).__name__ == "MeanReducer"
