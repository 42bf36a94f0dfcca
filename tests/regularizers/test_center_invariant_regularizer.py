import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.reducers import SumReducer
from metric_runner.regularizers import CenterInvariantRegularizer
from tests.regularizers.regularizer_helpers import (
    assert_float32_agrees_with_float64,
    assert_matches_pml,
    random_weights,
    rows_3x2,
    value_and_grad,
)


def explicit_center_invariant(rows, p=2):
    """(||w_j||² - mean_k ||w_k||²)² / 4, averaged, with plain Python loops."""
    squared_norms = [float(sum(abs(v) ** p for v in row) ** (2 / p)) for row in rows.tolist()]
    mean = sum(squared_norms) / len(squared_norms)
    return sum((s - mean) ** 2 / 4 for s in squared_norms) / len(squared_norms)


def test_value_by_hand():
    # Squared L2 norms 25, 1, 4 (mean 10): deviations 15, -9, -6.
    assert CenterInvariantRegularizer()(rows_3x2()).item() == pytest.approx((225 + 81 + 36) / 4 / 3)
    # Squared L1 norms 49, 1, 4 (mean 18): deviations 31, -17, -14.
    l1 = CenterInvariantRegularizer(distance=LpDistance(normalize_embeddings=False, p=1))
    assert l1(rows_3x2()).item() == pytest.approx((961 + 289 + 196) / 4 / 3)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_value_matches_explicit_loops(p):
    rows = random_weights(num_rows=5, dim=3, dtype=torch.float64)
    regularizer = CenterInvariantRegularizer(distance=LpDistance(normalize_embeddings=False, p=p))
    assert regularizer(rows).item() == pytest.approx(explicit_center_invariant(rows, p))


def test_equal_norms_give_zero_with_zero_gradient():
    value, grad = value_and_grad(
        CenterInvariantRegularizer(), torch.tensor([[3.0, 4.0], [0.0, -5.0], [5.0, 0.0]])
    )
    assert value.item() == 0
    assert torch.equal(grad, torch.zeros(3, 2))
    assert torch.isfinite(value_and_grad(CenterInvariantRegularizer(), torch.zeros(3, 2))[1]).all()


@pytest.mark.parametrize(
    "distance",
    [CosineSimilarity(), LpDistance(), LpDistance(normalize_embeddings=False, power=2)],
    ids=["similarity", "normalized", "squared"],
)
def test_wrong_distance_is_rejected(distance):
    with pytest.raises(ValueError, match="LpDistance"):
        CenterInvariantRegularizer(distance=distance)


def test_float32_agrees_with_float64():
    assert_float32_agrees_with_float64(CenterInvariantRegularizer, random_weights())


def test_matches_pml(pml_regularizers, dtype):
    x = random_weights(dtype=dtype)
    assert_matches_pml(
        CenterInvariantRegularizer(), pml_regularizers.CenterInvariantRegularizer(), x, dtype
    )


def test_matches_pml_with_l1_norm_and_sum(pml_regularizers, pml_distances, pml_reducers, dtype):
    ours = CenterInvariantRegularizer(
        distance=LpDistance(normalize_embeddings=False, p=1), reducer=SumReducer()
    )
    theirs = pml_regularizers.CenterInvariantRegularizer(
        distance=pml_distances.LpDistance(normalize_embeddings=False, p=1),
        reducer=pml_reducers.SumReducer(),
    )
    assert_matches_pml(ours, theirs, random_weights(dtype=dtype), dtype)
