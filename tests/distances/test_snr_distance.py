import pytest
import torch

from metric_runner.distances import SNRDistance
from tests.distances.distance_helpers import assert_matches_pml, query_3x2
from tests.helpers import TOLERANCES, assert_close


def explicit_snr(query, ref):
    """d[i, j] = Var(ref_j - query_i) / Var(query_i) from the explicit N×M×D differences."""
    differences = ref.unsqueeze(0) - query.unsqueeze(1)
    return torch.var(differences, dim=2) / torch.var(query, dim=1, keepdim=True)


def test_unnormalized_matrix_by_hand():
    # Rows (3, 4), (1, 0), (0, -2): variances .5, .5, 2 (two values a, b: (a - b)² / 2).
    # Differences q1 - q0 = (-2, -4): var 2; q2 - q0 = (-3, -6): var 4.5; q2 - q1 = (-1, -2): var .5.
    expected = torch.tensor(
        [[0, 2 / 0.5, 4.5 / 0.5], [2 / 0.5, 0, 0.5 / 0.5], [4.5 / 2, 0.5 / 2, 0]],
        dtype=torch.float64,
    )
    assert_close(SNRDistance(normalize_embeddings=False)(query_3x2()), expected, torch.float64)


@pytest.mark.parametrize("normalize_embeddings", [True, False])
def test_matrix_equals_explicit_differences(dtype, normalize_embeddings):
    generator = torch.Generator().manual_seed(5)
    query = (torch.randn(7, 6, generator=generator, dtype=torch.float64) * 2 + 1).to(dtype)
    ref = torch.randn(5, 6, generator=generator, dtype=torch.float64).to(dtype)
    distance = SNRDistance(normalize_embeddings=normalize_embeddings)
    for ref_emb in (None, ref):
        mat = distance(query, ref_emb)
        query_used = distance.maybe_normalize(query)
        ref_used = query_used if ref_emb is None else distance.maybe_normalize(ref_emb)
        assert_close(mat, explicit_snr(query_used, ref_used), dtype, scale=10)


def test_pairwise_distance_matches_the_matrix_diagonal():
    generator = torch.Generator().manual_seed(6)
    query, ref = torch.randn(2, 4, 5, generator=generator, dtype=torch.float64)
    distance = SNRDistance(normalize_embeddings=False)
    assert_close(
        distance.pairwise_distance(query, ref), torch.diagonal(distance(query, ref)), torch.float64
    )


def test_identical_rows_are_at_zero_distance():
    query = torch.randn(4, 8, generator=torch.Generator().manual_seed(7))
    assert torch.all(torch.diagonal(SNRDistance()(query)) >= 0)
    assert torch.allclose(torch.diagonal(SNRDistance()(query)), torch.zeros(4), atol=1e-5)


def test_is_inverted_true_is_rejected():
    with pytest.raises(ValueError, match="is_inverted must be False"):
        SNRDistance(is_inverted=True)


@pytest.mark.parametrize("kwargs", [{}, {"normalize_embeddings": False}, {"power": 2}, {"p": 1}])
def test_matches_pml(pml_distances, dtype, kwargs):
    assert_matches_pml(SNRDistance(**kwargs), pml_distances.SNRDistance(**kwargs), dtype)


def test_float16_runs_and_keeps_dtype():
    query = torch.randn(6, 5, generator=torch.Generator().manual_seed(4))
    mat = SNRDistance()(query.half())
    assert mat.dtype == torch.float16
    tol = TOLERANCES[torch.float16]
    torch.testing.assert_close(
        mat.float(), SNRDistance()(query), rtol=tol["rtol"] * 5, atol=tol["atol"] * 5
    )
