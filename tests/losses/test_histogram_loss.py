import math

import pytest
import torch

from metric_runner.distances import DotProductSimilarity, LpDistance
from metric_runner.losses import HistogramLoss
from tests.losses import tuple_loss_helpers as h

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")

TINY_EMBEDDINGS = [[1.0, 0.0], [0.9, 0.5], [0.2, 1.3], [-0.6, 0.8], [-1.0, -0.4], [0.3, -1.0]]
TINY_LABELS = [0, 0, 0, 1, 1, 2]


def tiny_batch():
    return torch.tensor(TINY_EMBEDDINGS, dtype=torch.float64), torch.tensor(TINY_LABELS)


def cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.hypot(*u) / math.hypot(*v)


def hand_histogram(values, n_bins):
    """The paper's δ_{ij,r}: (s − t_{r−1}) / Δ on [t_{r−1}, t_r], (t_{r+1} − s) / Δ on
    [t_r, t_{r+1}], averaged over the pairs."""
    delta = 2 / n_bins
    nodes = [-1 + r * delta for r in range(n_bins + 1)]
    hist = [0.0] * (n_bins + 1)
    for s in values:
        for r, t in enumerate(nodes):
            if r > 0 and nodes[r - 1] <= s <= t:
                hist[r] += (s - nodes[r - 1]) / delta
            elif r < n_bins and t <= s <= nodes[r + 1]:
                hist[r] += (nodes[r + 1] - s) / delta
    return [x / len(values) for x in hist]


def hand_histogram_loss(embeddings, pos_pairs, neg_pairs, n_bins):
    """Σ_r p⁻_r Σ_{q≤r} p⁺_q over the unordered pairs (each counted once)."""
    x = embeddings.tolist()
    unordered = lambda pairs: sorted({(min(i, j), max(i, j)) for i, j in pairs})  # noqa: E731
    pos = hand_histogram([cosine(x[i], x[j]) for i, j in unordered(pos_pairs)], n_bins)
    neg = hand_histogram([cosine(x[i], x[j]) for i, j in unordered(neg_pairs)], n_bins)
    return sum(neg[r] * sum(pos[: r + 1]) for r in range(n_bins + 1))


def test_hand_computed_value():
    embeddings, labels = tiny_batch()
    pairs = h.tiny_pairs(labels.tolist())
    pos = [(i, j) for i, j, same in pairs if same]
    neg = [(i, j) for i, j, same in pairs if not same]
    expected = hand_histogram_loss(embeddings, pos, neg, n_bins=4)
    assert 0 < expected < 1
    assert HistogramLoss(n_bins=4)(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)


def test_mined_pairs_keep_only_those_of_a_triplet():
    # Anchor 3 has a negative pair but no positive pair, and anchor 1 the other way round:
    # neither forms a triplet, so both pairs are left out.
    embeddings, labels = tiny_batch()
    a1, p = [0, 0, 1, 2], [1, 2, 0, 1]
    a2, n = [0, 0, 2, 3], [3, 5, 4, 1]
    pairs = tuple(torch.tensor(x) for x in (a1, p, a2, n))
    expected = hand_histogram_loss(
        embeddings, [(0, 1), (0, 2), (2, 1)], [(0, 3), (0, 5), (2, 4)], 8
    )
    assert HistogramLoss(delta=0.25)(embeddings, labels, pairs).item() == pytest.approx(
        expected, rel=1e-12
    )


def test_bins_from_either_argument():
    assert (HistogramLoss().n_bins, HistogramLoss().delta) == (100, 0.02)
    assert HistogramLoss(delta=0.5).n_bins == 4
    assert HistogramLoss(n_bins=4, delta=0.5).delta == 0.5


RECIPES = [
    lambda lib: {},
    lambda lib: {"distance": lib.distances.DotProductSimilarity()},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("kwargs", [{}, {"n_bins": 7}, {"delta": 0.25}])
def test_matches_pml(pml, recipe, kwargs):
    # In float32 only: PML places its nodes in float32, so float64 would agree to float32
    # rounding anyway (float64 is checked against float32 below).
    h.assert_matches_pml(HistogramLoss, torch.float32, recipe, **kwargs)


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
def test_matches_pml_with_mined_tuples(pml, indices):
    h.assert_matches_pml(HistogramLoss, torch.float32, indices=indices, n_bins=10)


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(HistogramLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: HistogramLoss(n_bins=10))
    h.assert_float32_agrees_with_float64(lambda: HistogramLoss(n_bins=10), indices=h.mined_triplets)


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: HistogramLoss(n_bins=10))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: HistogramLoss(n_bins=10), h.mined_pairs)


def test_zero_loss_without_positive_pairs():
    embeddings, _ = tiny_batch()
    h.assert_zero_loss_with_gradient(HistogramLoss(), embeddings, torch.arange(6))


@pytest.mark.parametrize(
    "distance", [LpDistance(), DotProductSimilarity(normalize_embeddings=False)]
)
def test_rejects_distances_outside_minus_one_one(distance):
    with pytest.raises(ValueError, match="CosineSimilarity"):
        HistogramLoss(distance=distance)


def test_rejects_bad_arguments_and_ref_emb():
    with pytest.raises(ValueError, match="delta = 2 / n_bins"):
        HistogramLoss(n_bins=3, delta=0.5)
    with pytest.raises(ValueError, match="n_bins"):
        HistogramLoss(n_bins=0)
    embeddings, labels = tiny_batch()
    with pytest.raises(ValueError, match="ref_emb"):
        HistogramLoss()(embeddings, labels, ref_emb=embeddings.clone(), ref_labels=labels)
