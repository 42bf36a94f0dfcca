import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from metric_runner.reducers import DoNothingReducer, MeanReducer
from metric_runner.regularizers import SparseCentersRegularizer
from metric_runner.regularizers import sparse_centers_regularizer as sparse_centers_module
from tests.helpers import assert_close
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


@pytest.mark.parametrize("power, rows_per_block", [(1, None), (2, 5), (2, None), (3, 1)])
def test_stats_match_pml(pml_regularizers, pml_distances, monkeypatch, power, rows_per_block):
    if rows_per_block is not None:
        # Several blocks of rows in the cross-class sum (12 centers, so 12 * rows entries).
        monkeypatch.setattr(sparse_centers_module, "STATS_BLOCK_ENTRIES", 12 * rows_per_block)
    rows = random_weights(dtype=torch.float64)
    ours = SparseCentersRegularizer(
        4, 3, distance=CosineSimilarity(power=power), collect_stats=True
    )
    theirs = pml_regularizers.SparseCentersRegularizer(
        4, 3, distance=pml_distances.CosineSimilarity(power=power), collect_stats=True
    )
    ours(rows)
    theirs(rows)
    for name in ("same_class_center_sim", "diff_class_center_sim"):
        assert getattr(ours, name) == pytest.approx(getattr(theirs, name), rel=1e-9, abs=1e-12)


def test_distance_records_norm_stats_as_pml(pml_regularizers, pml_distances):
    rows = random_weights(dtype=torch.float64)
    ours = SparseCentersRegularizer(3, 4, distance=CosineSimilarity(collect_stats=True))
    theirs = pml_regularizers.SparseCentersRegularizer(
        3, 4, distance=pml_distances.CosineSimilarity(collect_stats=True)
    )
    ours(rows)
    theirs(rows)
    for name in ("initial_avg_query_norm", "initial_avg_ref_norm", "final_avg_query_norm"):
        assert getattr(ours.distance, name) == pytest.approx(getattr(theirs.distance, name))
    assert ours.distance.initial_avg_query_norm != pytest.approx(1.0)


def test_size_where_the_full_center_matrix_cannot_be_built():
    # 200,000 centers: the (CK, CK) similarity matrix would be 4e10 floats (160 GB); the
    # same-class blocks are 20,000 x 10 x 10. The reference is the Euclidean distance between
    # unit vectors, sqrt(2 - 2 cos), from torch.cdist on the same blocks.
    num_classes, centers_per_class, dim = 20_000, 10, 128
    rows = random_weights(num_rows=num_classes * centers_per_class, dim=dim)
    value, grad = value_and_grad(
        SparseCentersRegularizer(num_classes, centers_per_class, collect_stats=True), rows
    )

    def cdist_reference(x):
        by_class = torch.nn.functional.normalize(x, dim=1).view(num_classes, centers_per_class, -1)
        distances = torch.cdist(by_class, by_class).triu(diagonal=1)
        return distances.sum() / (num_classes * centers_per_class * (centers_per_class - 1))

    expected_value, expected_grad = value_and_grad(cdist_reference, rows.double())
    assert_close(value, expected_value, torch.float32)
    assert_close(grad, expected_grad, torch.float32, scale=10)
