import pytest
import torch

from metric_runner.samplers import MPerClassSampler
from metric_runner.samplers.rank_share_sampler import RankShareSampler

LABELS = torch.arange(8).repeat_interleave(torch.tensor([5, 7, 4, 9, 6, 5, 8, 4]))


def share(rank, num_replicas, seed=3, batch_size=12):
    generator = torch.Generator()
    inner = MPerClassSampler(
        LABELS, m=3, batch_size=batch_size, length_before_new_iter=50, generator=generator
    )
    return RankShareSampler(inner, batch_size, generator, seed, num_replicas, rank)


def global_batches(num_replicas, epochs=2, **kwargs):
    """Per epoch: the global batches the ranks train on together (rank slices side by side)."""
    samplers = [share(rank, num_replicas, **kwargs) for rank in range(num_replicas)]
    result = []
    for _ in range(epochs):
        slices = [torch.tensor(list(s)).view(-1, s.local_batch_size) for s in samplers]
        result.append(torch.cat(slices, dim=1))
    return result


def test_ranks_share_the_global_batches_of_one_process():
    one = global_batches(1)
    for num_replicas in (2, 3, 4):
        for epoch, batches in enumerate(global_batches(num_replicas)):
            torch.testing.assert_close(batches, one[epoch], rtol=0, atol=0)
    assert one[0].shape == (4, 12)  # 50 // 12 global batches of 12
    # Each global batch is MPerClassSampler's: 4 classes x 3 samples.
    for batch in one[0]:
        _, counts = torch.unique(LABELS[batch], return_counts=True)
        assert counts.tolist() == [3, 3, 3, 3]


def test_each_epoch_is_reshuffled_and_depends_only_on_seed_and_epoch():
    first, second = global_batches(1)
    assert not torch.equal(first, second)
    resumed = share(0, 1)
    resumed.set_epoch(2)  # a run resumed after epoch 1 draws epoch 2's batches
    torch.testing.assert_close(torch.tensor(list(resumed)).view(-1, 12), second, rtol=0, atol=0)
    other_seed = global_batches(1, seed=4)[0]
    assert not torch.equal(first, other_seed)


def test_rank_slices_are_disjoint_and_cover_the_batch():
    samplers = [share(rank, 2) for rank in range(2)]
    assert [len(s) for s in samplers] == [24, 24]
    rank0, rank1 = (torch.tensor(list(s)).view(-1, 6) for s in samplers)
    # Rank 0 gets the first two classes of each batch, rank 1 the other two.
    for a, b in zip(rank0, rank1):
        assert not set(LABELS[a].tolist()) & set(LABELS[b].tolist())


def test_a_batch_size_that_does_not_divide_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="batch_size=12 does not divide by the 5 processes"):
        share(0, 5)
    with pytest.raises(ValueError, match="rank must be in"):
        share(2, 2)
