import pytest
import torch

from metric_runner.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from metric_runner.reducers import SumReducer
from metric_runner.regularizers import RegularFaceRegularizer
from tests.regularizers.regularizer_helpers import (
    assert_float32_agrees_with_float64,
    assert_matches_pml,
    random_weights,
    rows_3x2,
    value_and_grad,
)


def explicit_regular_face(rows):
    """mean_i max_{j != i} cos(w_i, w_j) with plain loops (differentiable)."""
    unit = torch.nn.functional.normalize(rows, dim=1)
    maxima = []
    for i in range(len(rows)):
        cosines = [torch.dot(unit[i], unit[j]) for j in range(len(rows)) if j != i]
        maxima.append(torch.max(torch.stack(cosines)))
    return torch.stack(maxima).mean()


def test_value_by_hand():
    # Cosines: (0, 1) .6, (0, 2) -.8, (1, 2) 0 -> nearest other class: .6, .6, 0.
    assert RegularFaceRegularizer()(rows_3x2()).item() == pytest.approx(1.2 / 3)
    # Dot products: (0, 1) 3, (0, 2) -8, (1, 2) 0 -> 3, 3, 0.
    dot = RegularFaceRegularizer(distance=DotProductSimilarity(normalize_embeddings=False))
    assert dot(rows_3x2()).item() == pytest.approx(2.0)


def test_value_and_gradient_match_explicit_loops():
    rows = random_weights(num_rows=7, dim=4, dtype=torch.float64)
    value, grad = value_and_grad(RegularFaceRegularizer(), rows)
    expected_value, expected_grad = value_and_grad(explicit_regular_face, rows)
    torch.testing.assert_close(value, expected_value)
    # Only each class's nearest other class receives gradient from that class's term.
    torch.testing.assert_close(grad, expected_grad)


def test_single_class_keeps_its_own_similarity():
    assert RegularFaceRegularizer()(torch.tensor([[2.0, 0.0]])).item() == pytest.approx(1.0)


def test_distance_must_be_a_similarity():
    with pytest.raises(ValueError, match="is_inverted=True"):
        RegularFaceRegularizer(distance=LpDistance())


def test_float32_agrees_with_float64():
    assert_float32_agrees_with_float64(RegularFaceRegularizer, random_weights())


def test_matches_pml(pml_regularizers, dtype):
    x = random_weights(dtype=dtype)
    assert_matches_pml(
        RegularFaceRegularizer(), pml_regularizers.RegularFaceRegularizer(), x, dtype
    )


def test_matches_pml_with_squared_cosine_and_sum(
    pml_regularizers, pml_distances, pml_reducers, dtype
):
    ours = RegularFaceRegularizer(distance=CosineSimilarity(power=2), reducer=SumReducer())
    theirs = pml_regularizers.RegularFaceRegularizer(
        distance=pml_distances.CosineSimilarity(power=2), reducer=pml_reducers.SumReducer()
    )
    assert_matches_pml(ours, theirs, random_weights(dtype=dtype), dtype)
