import math

import pytest
import torch

from metric_runner.distances import LpDistance
from tests.distances.distance_helpers import assert_matches_pml, query_3x2
from tests.helpers import TOLERANCES, assert_close


def test_unnormalized_l2_matrix_by_hand():
    mat = LpDistance(normalize_embeddings=False)(query_3x2())
    s20, s45, s5 = math.sqrt(20), math.sqrt(45), math.sqrt(5)
    expected = torch.tensor([[0, s20, s45], [s20, 0, s5], [s45, s5, 0]], dtype=torch.float64)
    assert_close(mat, expected, torch.float64)


def test_unnormalized_l1_matrix_by_hand():
    mat = LpDistance(normalize_embeddings=False, p=1)(query_3x2())
    expected = torch.tensor([[0, 6, 9], [6, 0, 3], [9, 3, 0]], dtype=torch.float64)
    assert_close(mat, expected, torch.float64)


def test_normalized_rows_and_power_by_hand():
    # Normalized rows: (.6, .8), (1, 0), (0, -1); squared distances .8, 3.6 and 2.
    expected_squared = torch.tensor(
        [[0, 0.8, 3.6], [0.8, 0, 2.0], [3.6, 2.0, 0]], dtype=torch.float64
    )
    assert_close(LpDistance()(query_3x2()), expected_squared.sqrt(), torch.float64)
    assert_close(LpDistance(power=2)(query_3x2()), expected_squared, torch.float64)


def test_ref_emb_gives_query_by_ref_matrix():
    ref = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    mat = LpDistance(normalize_embeddings=False)(query_3x2(), ref)
    expected = torch.tensor([[5, math.sqrt(16)], [1, 2], [2, math.sqrt(13)]], dtype=torch.float64)
    assert_close(mat, expected, torch.float64)


def test_pairwise_distance_is_rowwise_and_uses_rows_as_given():
    query, ref = (
        query_3x2(),
        torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64),
    )
    assert_close(
        LpDistance(p=1).pairwise_distance(query, ref),
        torch.tensor([7.0, 1.0, 2.0]),
        torch.float64,
        scale=100,
    )
    assert_close(
        LpDistance().pairwise_distance(query, ref),
        torch.tensor([5.0, 1.0, 2.0]),
        torch.float64,
        scale=100,
    )


def test_is_a_distance_closer_means_smaller():
    distance = LpDistance()
    assert distance.is_inverted is False
    values = torch.tensor([3.0, 1.0, 2.0])
    assert distance.smallest_dist(values) == 1.0
    assert distance.largest_dist(values) == 3.0
    # margin(x, y) > 0 when y is the closer one.
    assert distance.margin(torch.tensor(3.0), torch.tensor(1.0)) == 2.0


def test_is_inverted_true_is_rejected():
    with pytest.raises(ValueError, match="is_inverted must be False"):
        LpDistance(is_inverted=True)


@pytest.mark.parametrize(
    "kwargs", [{}, {"p": 1}, {"power": 2}, {"normalize_embeddings": False, "p": 3}]
)
def test_matches_pml(pml_distances, dtype, kwargs):
    assert_matches_pml(LpDistance(**kwargs), pml_distances.LpDistance(**kwargs), dtype)


@pytest.mark.parametrize("num_rows", [4, 40])  # 40 rows take cdist's matmul path
@pytest.mark.parametrize("kwargs", [{}, {"p": 1}, {"power": 2}, {"normalize_embeddings": False}])
def test_gradient_finite_at_zero_distance(num_rows, kwargs):
    rows = torch.randn(num_rows // 2, 6, generator=torch.Generator().manual_seed(0))
    embeddings = torch.cat([rows, rows]).requires_grad_(True)  # every row has an exact duplicate
    LpDistance(**kwargs)(embeddings).sum().backward()
    assert torch.isfinite(embeddings.grad).all()


def test_float32_agrees_with_float64():
    query = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert_close(LpDistance()(query.float()), LpDistance()(query), torch.float32)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_runs_and_keeps_dtype(half):
    query = torch.randn(6, 5, generator=torch.Generator().manual_seed(4))
    mat = LpDistance()(query.to(half))
    assert mat.dtype == half
    tol = TOLERANCES[torch.float16]
    torch.testing.assert_close(mat.float(), LpDistance()(query), rtol=tol["rtol"], atol=tol["atol"])


def test_wrong_shapes_are_rejected():
    with pytest.raises(ValueError, match="query_emb must be 2D"):
        LpDistance()(torch.ones(3))
    with pytest.raises(ValueError, match="different embedding sizes"):
        LpDistance()(torch.ones(3, 2), torch.ones(3, 4))


@pytest.mark.parametrize("normalize", [True, False])
def test_squared_euclidean_path_matches_cdist_squared(normalize):
    generator = torch.Generator().manual_seed(5)
    query = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    ref = torch.randn(30, 6, generator=generator, dtype=torch.float64)
    upstream = torch.randn(40, 30, generator=generator, dtype=torch.float64)
    ours_q, ours_r = query.clone().requires_grad_(True), ref.clone().requires_grad_(True)
    ref_q, ref_r = query.clone().requires_grad_(True), ref.clone().requires_grad_(True)
    mat = LpDistance(power=2, normalize_embeddings=normalize)(ours_q, ours_r)
    base = LpDistance(normalize_embeddings=normalize)
    expected = torch.cdist(base.maybe_normalize(ref_q), base.maybe_normalize(ref_r)) ** 2
    torch.testing.assert_close(mat, expected)
    (mat * upstream).sum().backward()
    (expected * upstream).sum().backward()
    torch.testing.assert_close(ours_q.grad, ref_q.grad)
    torch.testing.assert_close(ours_r.grad, ref_r.grad)


def test_squared_euclidean_self_distance_is_zero_with_zero_gradient():
    x = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)
    mat = LpDistance(power=2)(x)
    torch.testing.assert_close(torch.diagonal(mat), torch.zeros(30, dtype=torch.float64))
    torch.diagonal(mat).sum().backward()
    torch.testing.assert_close(x.grad, torch.zeros_like(x), atol=1e-7, rtol=0)
