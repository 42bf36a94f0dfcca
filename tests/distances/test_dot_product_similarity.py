import pytest
import torch

from metric_runner.distances import DotProductSimilarity
from tests.distances.distance_helpers import assert_matches_pml, query_3x2
from tests.helpers import TOLERANCES, assert_close


def test_unnormalized_matrix_by_hand():
    expected = torch.tensor([[25, 3, -8], [3, 1, 0], [-8, 0, 4]], dtype=torch.float64)
    assert_close(
        DotProductSimilarity(normalize_embeddings=False)(query_3x2()), expected, torch.float64
    )


def test_normalized_by_default_by_hand():
    expected = torch.tensor([[1, 0.6, -0.8], [0.6, 1, 0], [-0.8, 0, 1]], dtype=torch.float64)
    assert_close(DotProductSimilarity()(query_3x2()), expected, torch.float64)


def test_power_and_ref_emb_by_hand():
    ref = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    mat = DotProductSimilarity(normalize_embeddings=False, power=2)(query_3x2(), ref)
    assert_close(mat, torch.tensor([[49.0], [1.0], [4.0]], dtype=torch.float64), torch.float64)


def test_pairwise_distance_by_hand():
    ref = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    pairwise = DotProductSimilarity().pairwise_distance(query_3x2(), ref)
    assert_close(pairwise, torch.tensor([7.0, 2.0, -2.0]), torch.float64)


def test_is_inverted_and_cannot_be_changed():
    assert DotProductSimilarity().is_inverted is True
    with pytest.raises(TypeError):
        DotProductSimilarity(is_inverted=False)


@pytest.mark.parametrize(
    "kwargs", [{}, {"normalize_embeddings": False}, {"normalize_embeddings": False, "power": 2}]
)
def test_matches_pml(pml_distances, dtype, kwargs):
    assert_matches_pml(
        DotProductSimilarity(**kwargs), pml_distances.DotProductSimilarity(**kwargs), dtype
    )


def test_float16_runs_and_keeps_dtype():
    query = torch.randn(6, 5, generator=torch.Generator().manual_seed(4))
    mat = DotProductSimilarity()(query.half())
    assert mat.dtype == torch.float16
    tol = TOLERANCES[torch.float16]
    torch.testing.assert_close(
        mat.float(), DotProductSimilarity()(query), rtol=tol["rtol"], atol=tol["atol"]
    )
