import pytest
import torch

from metric_runner.distances import BaseDistance, LpDistance


class HalfDotProduct(BaseDistance):
    """A minimal user-defined distance: the base class supplies normalization and power."""

    def compute_mat(self, query_emb, ref_emb):
        return torch.matmul(query_emb, ref_emb.t()) / 2

    def pairwise_distance(self, query_emb, ref_emb):
        return torch.sum(query_emb * ref_emb, dim=1) / 2


def test_base_class_is_abstract_but_pairwise_distance_is_optional():
    with pytest.raises(TypeError, match="abstract"):
        BaseDistance()

    class MatrixOnly(BaseDistance):
        def compute_mat(self, query_emb, ref_emb):
            return query_emb @ ref_emb.t()

    distance = MatrixOnly(normalize_embeddings=False, power=2)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    torch.testing.assert_close(distance(x), (x @ x.t()) ** 2)
    with pytest.raises(NotImplementedError, match="MatrixOnly defines no pairwise_distance"):
        distance.pairwise_distance(x, x)


def test_subclass_may_accept_other_shapes_by_overriding_check_shapes():
    class Flattening(BaseDistance):
        def compute_mat(self, query_emb, ref_emb):
            return torch.cdist(query_emb.flatten(1), ref_emb.flatten(1))

        def check_shapes(self, query_emb, ref_emb):
            pass

    cubes = torch.arange(24.0).view(4, 2, 3)
    torch.testing.assert_close(
        Flattening(normalize_embeddings=False)(cubes),
        torch.cdist(cubes.view(4, 6), cubes.view(4, 6)),
    )
    with pytest.raises(ValueError, match="query_emb must be 2D"):
        HalfDotProduct()(cubes)


def test_subclass_gets_normalization_and_power():
    query = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=torch.float64)
    expected = torch.tensor([[0.5, 0.4], [0.4, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(HalfDotProduct()(query), expected)
    torch.testing.assert_close(HalfDotProduct(power=3)(query), expected**3)
    unnormalized = torch.tensor([[12.5, 4.0], [4.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(HalfDotProduct(normalize_embeddings=False)(query), unnormalized)


def test_normalize_and_norm_use_p():
    rows = torch.tensor([[3.0, -1.0]])
    distance = HalfDotProduct(p=1)
    torch.testing.assert_close(distance.get_norm(rows), torch.tensor([4.0]))
    torch.testing.assert_close(distance.normalize(rows), torch.tensor([[0.75, -0.25]]))
    torch.testing.assert_close(
        HalfDotProduct(normalize_embeddings=False).maybe_normalize(rows), rows
    )


@pytest.mark.parametrize("is_inverted", [False, True])
def test_direction_helpers_follow_is_inverted(is_inverted):
    distance = HalfDotProduct(is_inverted=is_inverted)
    values = torch.tensor([[1.0, 5.0, 3.0]])
    closest, farthest = (5.0, 1.0) if is_inverted else (1.0, 5.0)
    assert distance.smallest_dist(values) == closest
    assert distance.largest_dist(values) == farthest
    # dim and keepdim pass through to torch.max / torch.min.
    values_out, index_out = distance.smallest_dist(values, dim=1, keepdim=True)
    assert values_out.shape == (1, 1) and values[0, index_out.item()] == closest
    x, y = torch.tensor(1.0), torch.tensor(3.0)
    assert distance.margin(x, y) == (2.0 if is_inverted else -2.0)


def test_stats_are_recorded_only_when_collect_stats():
    query = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    ref = torch.tensor([[1.0, 0.0]])
    distance = LpDistance(collect_stats=True)
    distance(query, ref)
    assert distance.initial_avg_query_norm == pytest.approx(3.5)
    assert distance.initial_avg_ref_norm == pytest.approx(1.0)
    assert distance.final_avg_query_norm == pytest.approx(1.0)
    distance(query)
    assert distance.initial_avg_ref_norm == pytest.approx(3.5)
    assert distance._record_these == ["p", "power"]
    silent = LpDistance(collect_stats=False)
    silent(query)
    assert not hasattr(silent, "initial_avg_query_norm")
