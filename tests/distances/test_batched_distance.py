import pytest
import torch

from metric_runner.distances import BatchedDistance, CosineSimilarity, LpDistance


def collect_blocks(distance, batch_size, query, ref=None):
    blocks = []
    BatchedDistance(
        distance, iter_fn=lambda mat, s, e: blocks.append((mat, s, e)), batch_size=batch_size
    )(query, ref)
    return blocks


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10])
@pytest.mark.parametrize("with_ref", [False, True])
def test_blocks_reassemble_the_full_matrix(batch_size, with_ref):
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(7, 5, generator=generator)
    ref = torch.randn(4, 5, generator=generator) if with_ref else None
    distance = LpDistance(p=1, power=2)
    blocks = collect_blocks(distance, batch_size, query, ref)
    assert [(s, e) for _, s, e in blocks] == [
        (s, min(s + batch_size, 7)) for s in range(0, 7, batch_size)
    ]
    assert all(mat.shape[0] == e - s for mat, s, e in blocks)
    torch.testing.assert_close(torch.cat([mat for mat, _, _ in blocks]), distance(query, ref))


def test_attributes_come_from_the_wrapped_distance():
    batched = BatchedDistance(CosineSimilarity(power=2), iter_fn=lambda *args: None)
    assert batched.is_inverted is True
    assert batched.power == 2
    assert batched.margin(torch.tensor(0.1), torch.tensor(0.5)) == pytest.approx(0.4)


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        BatchedDistance(LpDistance(), iter_fn=lambda *args: None, batch_size=0)


def test_missing_iter_fn_is_a_clear_error():
    with pytest.raises(TypeError, match="iter_fn"):
        BatchedDistance(LpDistance())(torch.ones(3, 2))
