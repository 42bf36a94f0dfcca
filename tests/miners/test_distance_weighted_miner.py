import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.miners import DistanceWeightedMiner
from tests.helpers import clustered_embeddings

# Miner calls per frequency estimate; each anchor draws one triplet per class member (20) per
# call, so ~800 draws per anchor.
NUM_CALLS = 40
PER_CLASS = 20


def small_batch(dtype=torch.float64):
    embeddings, labels = clustered_embeddings(
        num_classes=3, per_class=PER_CLASS, dim=5, spread=1.0, seed=1, dtype=dtype
    )
    return embeddings.detach(), labels


def expected_negative_probabilities(embeddings, labels, cutoff, nonzero_loss_cutoff):
    """Wu et al.: weight 1/q(d) = d^(2-n) (1 - d²/4)^(-(n-3)/2), d clipped below at cutoff,
    zero at or beyond nonzero_loss_cutoff; normalized per anchor."""
    normalized = torch.nn.functional.normalize(embeddings.double(), dim=1).tolist()
    labels, dim = labels.tolist(), embeddings.shape[1]
    probs = torch.zeros(len(labels), len(labels), dtype=torch.float64)
    for a in range(len(labels)):
        for j in range(len(labels)):
            d = math.dist(normalized[a], normalized[j])
            if labels[a] == labels[j] or d >= nonzero_loss_cutoff:
                continue
            d = max(d, cutoff)
            probs[a, j] = d ** (2 - dim) * (1 - d * d / 4) ** (-(dim - 3) / 2)
    return probs / probs.sum(dim=1, keepdim=True).clamp(min=1e-300)


def assert_frequencies_match(frequencies, probabilities, draws):
    """Each empirical frequency within 4.5 binomial standard deviations (plus a little slack)
    of its probability."""
    sigma = (probabilities * (1 - probabilities) / draws).sqrt()
    excess = (frequencies - probabilities).abs() - (4.5 * sigma + 0.003)
    assert excess.max() <= 0, f"largest excess {excess.max().item():.4f}"


def empirical_frequencies(miner, embeddings, labels, num_calls=NUM_CALLS):
    n = len(labels)
    negative_counts = torch.zeros(n, n, dtype=torch.float64)
    positive_counts = torch.zeros(n, n, dtype=torch.float64)
    for _ in range(num_calls):
        a, p, neg = miner(embeddings, labels)
        negative_counts.index_put_(
            (a, neg), torch.ones(len(a), dtype=torch.float64), accumulate=True
        )
        positive_counts.index_put_((a, p), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    rows = negative_counts.sum(dim=1, keepdim=True)
    return (
        negative_counts / rows.clamp(min=1),
        positive_counts / rows.clamp(min=1),
        rows.squeeze(1) / num_calls,
    )


@pytest.mark.parametrize("cutoff, nonzero_loss_cutoff", [(0.5, 1.4), (0.8, 1.8)])
def test_negatives_follow_inverse_density_weights(cutoff, nonzero_loss_cutoff):
    embeddings, labels = small_batch()
    torch.manual_seed(0)
    miner = DistanceWeightedMiner(cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff)
    neg_freq, pos_freq, draws_per_anchor = empirical_frequencies(miner, embeddings, labels)
    expected = expected_negative_probabilities(embeddings, labels, cutoff, nonzero_loss_cutoff)
    has_negative = expected.sum(dim=1) > 0
    assert has_negative.sum() >= len(labels) // 2
    draws = NUM_CALLS * PER_CLASS
    assert_frequencies_match(neg_freq[has_negative], expected[has_negative], draws)
    # each anchor with a usable negative draws one triplet per member of its class, with
    # positives uniform over its class mates
    torch.testing.assert_close(draws_per_anchor, PER_CLASS * has_negative.double())
    same = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~torch.eye(len(labels), dtype=torch.bool)
    uniform = same[has_negative].double() / (PER_CLASS - 1)
    assert_frequencies_match(pos_freq[has_negative], uniform, draws)


def test_anchors_without_negatives_closer_than_the_cutoff_are_dropped():
    embeddings, labels = small_batch()
    miner = DistanceWeightedMiner(cutoff=0.1, nonzero_loss_cutoff=0.6)
    expected = expected_negative_probabilities(embeddings, labels, 0.1, 0.6)
    a, _, n = miner(embeddings, labels)
    assert set(a.tolist()) == set(torch.where(expected.sum(dim=1) > 0)[0].tolist())
    assert (expected[a, n] > 0).all()


def test_pml_draws_from_the_same_distribution(pml):
    from pytorch_metric_learning.miners import DistanceWeightedMiner as PMLDistanceWeightedMiner

    embeddings, labels = small_batch()
    torch.manual_seed(1)
    num_calls = 15  # PML draws in a Python loop: slow
    neg_freq, _, draws_per_anchor = empirical_frequencies(
        PMLDistanceWeightedMiner(0.6, 1.6), embeddings, labels, num_calls
    )
    expected = expected_negative_probabilities(embeddings, labels, 0.6, 1.6)
    has_negative = expected.sum(dim=1) > 0
    assert_frequencies_match(neg_freq[has_negative], expected[has_negative], num_calls * PER_CLASS)
    torch.testing.assert_close(draws_per_anchor, PER_CLASS * has_negative.double())


def test_float32_and_float64_use_the_same_weights(dtype):
    embeddings, labels = small_batch(dtype)
    miner = DistanceWeightedMiner()
    mat = miner.distance(embeddings)
    neg_mask = labels.unsqueeze(1) != labels.unsqueeze(0)
    weights = miner.negative_weights(mat, neg_mask, embeddings.shape[1])
    normalized = weights / weights.sum(dim=1, keepdim=True)
    expected = expected_negative_probabilities(embeddings, labels, 0.5, 1.4)
    # float16 distances carry ~1e-3 relative error into the weights
    tolerance = 2e-3 if dtype == torch.float16 else 1e-4
    torch.testing.assert_close(normalized.double(), expected, atol=tolerance / 10, rtol=tolerance)


def test_high_dimensions_do_not_overflow():
    embeddings, labels = clustered_embeddings(num_classes=8, per_class=4, dim=512, seed=0)
    a, p, n = DistanceWeightedMiner()(embeddings.detach().half(), labels)
    assert len(a) > 0 and (labels[a] != labels[n]).all()


def test_labels_on_another_device(device):
    embeddings, labels = small_batch()
    a, p, n = DistanceWeightedMiner()(embeddings.to(device), labels.cpu())
    assert a.device == embeddings.to(device).device
    assert (labels[a.cpu()] == labels[p.cpu()]).all() and (labels[a.cpu()] != labels[n.cpu()]).all()


@pytest.mark.parametrize(
    "distance, message",
    [
        (CosineSimilarity(), "LpDistance"),
        (LpDistance(normalize_embeddings=False), "normalize_embeddings"),
        (LpDistance(power=2), "distance.power"),
    ],
)
def test_distance_must_be_normalized_euclidean(distance, message):
    with pytest.raises(ValueError, match=message):
        DistanceWeightedMiner(distance=distance)


def test_records_its_cutoffs():
    miner = DistanceWeightedMiner(cutoff=0.3, nonzero_loss_cutoff=1.2)
    assert {"cutoff", "nonzero_loss_cutoff"} <= set(miner._record_these)
    assert math.isclose(miner.cutoff, 0.3) and math.isclose(miner.nonzero_loss_cutoff, 1.2)
