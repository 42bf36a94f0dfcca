import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from metric_runner.reducers import DoNothingReducer, MeanReducer
from metric_runner.regularizers import SparseCentersRegularizer
from tests.regularizers.regularizer_helpers import (
    assert_float32_agrees_with_float64,
    assert_matches_pml,
    random_weights,
    value_and_grad,
)

# Two classes of two centers: class 0 = (1, 0), (0, 1) (cosine 0), class 1 = (1, 0), (-1, 0) (cosine -1).
TWO_BY_TWO = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)


def explicit_sparse_centers(rows, num_classes, centers_per_class):
    """sum over classes and center pairs t < s of sqrt(2 - 2 cos), over C·K·(K-1), with loops."""
    unit = torch.nn.functional.normalize(rows, dim=1).tolist()
    total = 0.0
    for c in range(num_classes):
        centers = unit[c * centers_per_class : (c + 1) * centers_per_class]
        for t in range(centers_per_class):
            for s in range(t + 1, centers_per_class):
                cosine = sum(a * b for a, b in zip(centers[t], centers[s]))
                total += math.sqrt(max(2 - 2 * cosine, 0))
    return total / (num_classes * centers_per_class * (centers_per_class - 1))


def test_value_by_hand():
    value = SparseCentersRegularizer(num_classes=2, centers_per_class=2)(TWO_BY_TWO)
    assert value.item() == pytest.approx((math.sqrt(2) + 2) / 4)


def test_loss_dict_holds_one_loss_per_center_pair_and_the_divisor():
    regularizer = SparseCentersRegularizer(
        num_classes=2, centers_per_class=2, reducer=DoNothingReducer()
    )
    loss_info = regularizer(TWO_BY_TWO)["loss"]
    torch.testing.assert_close(
        loss_info["losses"], torch.tensor([math.sqrt(2), 2.0], dtype=torch.float64)
    )
    assert loss_info["divisor"] == 4
    assert loss_info["reduction_type"] == "element"


@pytest.mark.parametrize("num_classes, centers_per_class", [(1, 3), (3, 4), (4, 2)])
def test_value_matches_explicit_loops(num_classes, centers_per_class):
    rows = random_weights(num_rows=num_classes * centers_per_class, dim=5, dtype=torch.float64)
    value = SparseCentersRegularizer(num_classes, centers_per_class)(rows)
    assert value.item() == pytest.approx(
        explicit_sparse_centers(rows, num_classes, centers_per_class)
    )


def test_identical_centers_give_zero_with_zero_gradient():
    # Rows exactly representable after normalization, so every cosine is exactly 1.
    rows = torch.tensor([[2.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, -3.0]])
    value, grad = value_and_grad(SparseCentersRegularizer(2, 2), rows)
    assert value.item() == 0
    assert torch.equal(grad, torch.zeros(4, 3))


def test_stats_are_mean_same_and_different_class_similarities():
    regularizer = SparseCentersRegularizer(2, 2, collect_stats=True)
    regularizer(TWO_BY_TWO)
    assert regularizer.same_class_center_sim == pytest.approx(-0.5)
    # Cross-class cosines: (0, 2) 1, (0, 3) -1, (1, 2) 0, (1, 3) 0.
    assert regularizer.diff_class_center_sim == pytest.approx(0.0)
    assert regularizer._record_these == ["num_classes", "centers_per_class"]
    assert (regularizer.num_classes, regularizer.centers_per_class) == (2, 2)
    silent = SparseCentersRegularizer(2, 2, collect_stats=False)
    silent(TWO_BY_TWO)
    assert not hasattr(silent, "same_class_center_sim")


def test_defaults_are_cosine_and_divisor():
    regularizer = SparseCentersRegularizer(2, 3)
    assert type(regularizer.distance).__name__ == "CosineSimilarity"
    assert type(regularizer.reducer).__name__ == "DivisorReducer"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"num_classes": 2, "centers_per_class": 1},
            ValueError,
            "centers_per_class must be at least 2",
        ),
        ({"num_classes": 0, "centers_per_class": 2}, ValueError, "num_classes must be at least 1"),
        (
            {"num_classes": 2, "centers_per_class": 2, "distance": LpDistance()},
            ValueError,
            "CosineSimilarity",
        ),
        (
            {"num_classes": 2, "centers_per_class": 2, "distance": DotProductSimilarity()},
            ValueError,
            "CosineSimilarity",
        ),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        SparseCentersRegularizer(**kwargs)


def test_wrong_number_of_rows_is_rejected():
    with pytest.raises(ValueError, match="expects num_classes \\* centers_per_class = 6 rows"):
        SparseCentersRegularizer(2, 3)(torch.randn(4, 5))


def test_float32_agrees_with_float64():
    assert_float32_agrees_with_float64(lambda: SparseCentersRegularizer(3, 4), random_weights())


@pytest.mark.parametrize("num_classes, centers_per_class", [(3, 4), (6, 2)])
def test_matches_pml(pml_regularizers, dtype, num_classes, centers_per_class):
    ours = SparseCentersRegularizer(num_classes, centers_per_class)
    theirs = pml_regularizers.SparseCentersRegularizer(num_classes, centers_per_class)
    assert_matches_pml(ours, theirs, random_weights(dtype=dtype), dtype)


def test_matches_pml_with_squared_cosine_and_mean(
    pml_regularizers, pml_distances, pml_reducers, dtype
):
    ours = SparseCentersRegularizer(4, 3, distance=CosineSimilarity(power=2), reducer=MeanReducer())
    theirs = pml_regularizers.SparseCentersRegularizer(
        4, 3, distance=pml_distances.CosineSimilarity(power=2), reducer=pml_reducers.MeanReducer()
    )
    assert_matches_pml(ours, theirs, random_weights(dtype=dtype), dtype)
