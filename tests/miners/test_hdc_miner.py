import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.miners import HDCMiner
from tests.miners.helpers import (
    LINE_EMBEDDINGS,
    LINE_LABELS,
    assert_same_tuples_up_to_precision,
    clustered_batch,
    distance_pairs,
    line_distance,
    tuple_sets,
)


def test_hand_derived_hardest_fraction_on_a_line():
    # 8 positive pairs -> ceil(1.2) = 2 farthest: (0,4) (4,0) at 5.
    # 12 negative pairs -> ceil(1.8) = 2 closest: (1,2) (2,1) at 1.
    miner = HDCMiner(filter_percentage=0.15, distance=line_distance())
    assert tuple_sets(miner(LINE_EMBEDDINGS, LINE_LABELS)) == ({(0, 4), (4, 0)}, {(1, 2), (2, 1)})


@pytest.mark.parametrize("filter_percentage, num_pos, num_neg", [(0.0, 0, 0), (1.0, 8, 12)])
def test_keeping_nothing_or_everything(filter_percentage, num_pos, num_neg):
    miner = HDCMiner(filter_percentage=filter_percentage, distance=line_distance())
    a1, _, a2, _ = miner(LINE_EMBEDDINGS, LINE_LABELS)
    assert (len(a1), len(a2)) == (num_pos, num_neg)


def test_external_pool_cascades_until_reset():
    miner = HDCMiner(filter_percentage=0.5, distance=line_distance())
    pool = (
        torch.tensor([0, 1, 1]),
        torch.tensor([4, 4, 0]),
        torch.tensor([1, 0, 0]),
        torch.tensor([2, 2, 3]),
    )
    miner.set_idx_externally(pool, LINE_LABELS)
    # pool distances: positives 5, 4, 1; negatives 1, 2, 3 -> keep ceil(1.5) = 2 of each
    assert tuple_sets(miner(LINE_EMBEDDINGS, LINE_LABELS)) == ({(0, 4), (1, 4)}, {(1, 2), (0, 2)})
    # the kept pairs are the next pool: ceil(1) = 1 of each
    assert tuple_sets(miner(LINE_EMBEDDINGS, LINE_LABELS)) == ({(0, 4)}, {(1, 2)})
    miner.reset_idx()
    assert not miner.was_set_externally
    pos, neg = tuple_sets(miner(LINE_EMBEDDINGS, LINE_LABELS))
    assert (len(pos), len(neg)) == (4, 6)


def test_external_triplets_become_their_pairs():
    miner = HDCMiner(filter_percentage=1.0, distance=line_distance())
    miner.set_idx_externally(
        (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([3, 4])), LINE_LABELS
    )
    assert tuple_sets(miner(LINE_EMBEDDINGS, LINE_LABELS)) == ({(0, 1), (2, 3)}, {(0, 3), (2, 4)})


@pytest.mark.parametrize("filter_percentage", [0.3, 0.77])
def test_same_pairs_as_pml_including_the_cascade(pml, filter_percentage):
    from pytorch_metric_learning.miners import HDCMiner as PMLHDCMiner

    for ours, theirs in distance_pairs():
        # Against a reference set the distances have no ties: the same pairs exactly.
        batch = clustered_batch(with_ref=True)
        mined = HDCMiner(filter_percentage, distance=ours)(*batch)
        assert tuple_sets(mined) == tuple_sets(
            PMLHDCMiner(filter_percentage, distance=theirs)(*batch)
        )
        # Within a batch every pair ties with its mirror image, and which of two tied pairs is
        # kept is arbitrary: compare the kept distances instead.
        embeddings, labels = clustered_batch()
        mat = ours(embeddings)
        mined = HDCMiner(filter_percentage, distance=ours)(embeddings, labels)
        expected = PMLHDCMiner(filter_percentage, distance=theirs)(embeddings, labels)
        for half in (0, 2):
            ours_kept = mat[mined[half], mined[half + 1]].sort().values
            theirs_kept = mat[expected[half], expected[half + 1]].sort().values
            torch.testing.assert_close(ours_kept, theirs_kept)

    embeddings, labels = clustered_batch()
    triplets = (
        torch.tensor([1, 2, 3, 5, 7]),
        torch.tensor([9, 10, 11, 12, 13]),
        torch.tensor([4, 6, 8, 14, 0]),
    )
    ours, theirs = HDCMiner(filter_percentage), PMLHDCMiner(filter_percentage)
    ours.set_idx_externally(triplets, labels)
    theirs.set_idx_externally(triplets, labels)
    for _ in range(3):
        assert tuple_sets(ours(embeddings, labels)) == tuple_sets(theirs(embeddings, labels))


def test_hardest_first_and_ties_at_the_cut_as_pml(pml):
    # Every positive pair ties with its mirror: ceil(0.3 * 8) = 3 of them, listed hardest
    # first; which of the tied pairs at the cut is kept, and the order, are PML's (top-k).
    miner = HDCMiner(filter_percentage=0.3, distance=line_distance())
    a1, p, a2, n = miner(LINE_EMBEDDINGS, LINE_LABELS)
    dist = line_distance()(LINE_EMBEDDINGS)
    assert dist[a1, p].tolist() == [5, 5, 4] and len(set(zip(a1.tolist(), p.tolist()))) == 3
    # ceil(0.3 * 12) = 4 negatives: both at distance 1, then two of the six at 2
    assert dist[a2, n].tolist() == [1, 1, 2, 2]
    theirs = pml.miners.HDCMiner(
        filter_percentage=0.3, distance=pml.distances.LpDistance(normalize_embeddings=False)
    )
    for ours_idx, their_idx in zip((a1, p, a2, n), theirs(LINE_EMBEDDINGS, LINE_LABELS)):
        assert ours_idx.tolist() == their_idx.tolist()


def test_float32_and_float64_mine_the_same_pairs(dtype):
    reference = HDCMiner(0.3)(*clustered_batch(with_ref=True))
    mined = HDCMiner(0.3)(*clustered_batch(dtype=dtype, with_ref=True))
    assert_same_tuples_up_to_precision(mined, reference, dtype)


def test_labels_and_external_pool_on_another_device(device):
    embeddings, labels = clustered_batch(device=device)
    miner = HDCMiner(0.5)
    miner.set_idx_externally(
        (torch.tensor([1, 2]), torch.tensor([9, 10]), torch.tensor([4, 6])), labels.cpu()
    )
    a1, p, a2, n = miner(embeddings, labels.cpu())
    assert a1.device == embeddings.device and len(a1) == len(a2) == 1


@pytest.mark.parametrize("filter_percentage", [-0.1, 1.5])
def test_filter_percentage_must_be_a_fraction(filter_percentage):
    with pytest.raises(ValueError, match="filter_percentage"):
        HDCMiner(filter_percentage)


def test_same_tensors_as_pml_at_a_larger_batch_full_of_ties(pml):
    # Cosine similarities are exactly symmetric, so every pair ties with its mirror image;
    # with thousands of pairs top-k selects and sorts (not a partial sort), and the kept
    # pairs and their order must still be PML's.
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(256, 16, generator=generator)
    labels = torch.randint(0, 64, (256,), generator=generator)
    ours = HDCMiner(0.4, distance=CosineSimilarity())(embeddings, labels)
    theirs = pml.miners.HDCMiner(0.4, distance=pml.distances.CosineSimilarity())(embeddings, labels)
    for ours_idx, their_idx in zip(ours, theirs):
        assert torch.equal(ours_idx, their_idx)
