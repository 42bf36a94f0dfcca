import pytest
import torch

from metric_runner.distances import CosineSimilarity
from tests.distances.distance_helpers import assert_matches_pml, query_3x2
from tests.helpers import TOLERANCES, assert_close

# Normalized rows (.6, .8), (1, 0), (0, -1): cosines .6, -.8 and 0.
COSINES_3X2 = torch.tensor([[1, 0.6, -0.8], [0.6, 1, 0], [-0.8, 0, 1]], dtype=torch.float64)


def test_matrix_by_hand():
    assert_close(CosineSimilarity()(query_3x2()), COSINES_3X2, torch.float64)


def test_power_by_hand():
    assert_close(CosineSimilarity(power=2)(query_3x2()), COSINES_3X2**2, torch.float64)


def test_ref_emb_by_hand():
    ref = torch.tensor([[0.0, 5.0], [-2.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([[0.8, -0.6], [0, -1], [-1, 0]], dtype=torch.float64)
    assert_close(CosineSimilarity()(query_3x2(), ref), expected, torch.float64)


def test_pairwise_distance_is_the_rowwise_dot_product_of_rows_as_given():
    query = query_3x2()
    ref = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert_close(
        CosineSimilarity().pairwise_distance(query, ref),
        torch.tensor([7.0, 2.0, -2.0]),
        torch.float64,
    )


def test_is_a_similarity_closer_means_larger():
    similarity = CosineSimilarity()
    assert similarity.is_inverted is True
    values = torch.tensor([0.2, 0.9, -0.5])
    assert similarity.smallest_dist(values) == 0.9
    assert similarity.largest_dist(values) == -0.5
    # margin(x, y) > 0 when y is the closer one: here y = .9 is more similar than x = .2.
    assert similarity.margin(torch.tensor(0.2), torch.tensor(0.9)) == pytest.approx(0.7)


def test_unnormalized_is_rejected():
    with pytest.raises(ValueError, match="normalize_embeddings=True"):
        CosineSimilarity(normalize_embeddings=False)


@pytest.mark.parametrize("kwargs", [{}, {"power": 2}])
def test_matches_pml(pml_distances, dtype, kwargs):
    assert_matches_pml(CosineSimilarity(**kwargs), pml_distances.CosineSimilarity(**kwargs), dtype)


def test_float16_runs_and_keeps_dtype():
    query = torch.randn(6, 5, generator=torch.Generator().manual_seed(4))
    mat = CosineSimilarity()(query.half())
    assert mat.dtype == torch.float16
    tol = TOLERANCES[torch.float16]
    torch.testing.assert_close(
        mat.float(), CosineSimilarity()(query), rtol=tol["rtol"], atol=tol["atol"]
    )
