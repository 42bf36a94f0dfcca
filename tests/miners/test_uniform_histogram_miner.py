import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.miners import UniformHistogramMiner
from tests.miners.helpers import clustered_batch, distance_pairs


def bins_of(values, num_bins):
    """Equal-width bins between min and max, the max falling in the last bin."""
    low, high = min(values), max(values)
    return [min(int((v - low) / (high - low) * num_bins), num_bins - 1) for v in values]


def pair_bins(mat, labels, pairs_are_positive, num_bins):
    """{pair: bin} over every positive (or negative) pair of the batch."""
    labels = labels.tolist()
    pairs = [
        (a, b)
        for a in range(len(labels))
        for b in range(len(labels))
        if a != b and (labels[a] == labels[b]) == pairs_are_positive
    ]
    values = [mat[a][b] for a, b in pairs]
    return dict(zip(pairs, bins_of(values, num_bins)))


@pytest.mark.parametrize("distance", [None, CosineSimilarity()], ids=["lp", "cosine"])
def test_every_non_empty_bin_gets_exactly_its_quota(distance):
    embeddings, labels = clustered_batch()
    miner = UniformHistogramMiner(num_bins=7, pos_per_bin=3, neg_per_bin=5, distance=distance)
    mat = miner.distance(embeddings).tolist()
    a1, p, a2, n = miner(embeddings, labels)
    for pairs, positive, quota in (((a1, p), True, 3), ((a2, n), False, 5)):
        bin_of = pair_bins(mat, labels, positive, 7)
        mined_bins = [
            bin_of[pair] for pair in zip(pairs[0].tolist(), pairs[1].tolist())
        ]  # KeyError if invalid
        non_empty = set(bin_of.values())
        assert {b: mined_bins.count(b) for b in non_empty} == {b: quota for b in non_empty}


def test_draws_are_uniform_within_a_bin():
    embeddings, labels = clustered_batch()
    miner = UniformHistogramMiner(num_bins=3, pos_per_bin=50, neg_per_bin=1)
    bin_of = pair_bins(miner.distance(embeddings).tolist(), labels, True, 3)
    middle_bin = [pair for pair, b in bin_of.items() if b == 1]
    torch.manual_seed(0)
    counts = dict.fromkeys(middle_bin, 0)
    num_calls = 40
    for _ in range(num_calls):
        a1, p, _, _ = miner(embeddings, labels)
        for pair in zip(a1.tolist(), p.tolist()):
            if pair in counts:
                counts[pair] += 1
    frequencies = torch.tensor(list(counts.values()), dtype=torch.float64) / (50 * num_calls)
    expected = 1 / len(middle_bin)
    sigma = (expected * (1 - expected) / (50 * num_calls)) ** 0.5
    assert (frequencies - expected).abs().max() <= 4.5 * sigma


def test_as_many_pairs_as_pml(pml):
    from pytorch_metric_learning.miners import UniformHistogramMiner as PMLUniformHistogramMiner

    for with_ref in (False, True):
        batch = clustered_batch(with_ref=with_ref)
        for ours, theirs in distance_pairs():
            mined = UniformHistogramMiner(11, 2, 3, distance=ours)(*batch)
            expected = PMLUniformHistogramMiner(11, 2, 3, distance=theirs)(*batch)
            assert [len(t) for t in mined] == [len(t) for t in expected]


def test_float32_and_float64_fill_the_same_bins(dtype):
    def lengths(dtype):
        return [
            len(t)
            for t in UniformHistogramMiner(9, 2, 2)(*clustered_batch(dtype=dtype, with_ref=True))
        ]

    assert lengths(dtype) == lengths(torch.float64)


def test_labels_on_another_device_and_empty_pair_sets(device):
    embeddings, labels = clustered_batch(device=device)
    a1, p, a2, n = UniformHistogramMiner(5, 2, 2)(embeddings, labels.cpu())
    assert a1.device == embeddings.device
    assert (labels[a1.cpu()] == labels[p.cpu()]).all() and (
        labels[a2.cpu()] != labels[n.cpu()]
    ).all()
    # one class: no negatives at all
    a1, p, a2, n = UniformHistogramMiner(5, 2, 2)(embeddings[:4], torch.zeros(4, dtype=torch.long))
    assert len(a2) == len(n) == 0 and len(a1) > 0


@pytest.mark.parametrize("kwargs", [{"num_bins": 0}, {"pos_per_bin": 0}, {"neg_per_bin": 2.5}])
def test_counts_must_be_positive_integers(kwargs):
    with pytest.raises(ValueError, match="positive integer"):
        UniformHistogramMiner(**kwargs)
