import statistics

import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.losses import ContrastiveLoss, SignalToNoiseRatioContrastiveLoss
from metric_runner.reducers import DoNothingReducer, MeanReducer
from tests.losses import tuple_loss_helpers as h

# Four 4-dimensional embeddings (SNR needs a variance per row), two classes.
EMBEDDINGS = [
    [1.0, 2.0, 0.0, -1.0],
    [1.5, 1.0, 0.5, -1.0],
    [-1.0, 0.0, 2.0, 1.0],
    [3.0, -2.0, 0.0, 1.0],
]
LABELS = [0, 0, 1, 1]


def snr(anchor, other):
    """Var(other − anchor) / Var(anchor), unbiased variances, after L2 normalization."""
    anchor, other = (unit(anchor), unit(other))
    return statistics.variance([o - a for a, o in zip(anchor, other)]) / statistics.variance(anchor)


def unit(v):
    norm = sum(x * x for x in v) ** 0.5
    return [x / norm for x in v]


def hand_losses(pos_margin, neg_margin):
    pos, neg = [], []
    for i, j, same in h.tiny_pairs(LABELS):
        d = snr(EMBEDDINGS[i], EMBEDDINGS[j])
        if same:
            pos.append(max(d - pos_margin, 0))
        else:
            neg.append(max(neg_margin - d, 0))
    return pos, neg


def mean_of_nonzero(values):
    nonzero = [v for v in values if v > 0]
    return sum(nonzero) / len(nonzero) if nonzero else 0.0


@pytest.mark.parametrize(("pos_margin", "neg_margin"), [(0, 1), (0.2, 2.5)])
def test_hand_computed_value_averages_nonzero_pairs(pos_margin, neg_margin):
    embeddings, labels = torch.tensor(EMBEDDINGS, dtype=torch.float64), torch.tensor(LABELS)
    pos, neg = hand_losses(pos_margin, neg_margin)
    loss_fn = SignalToNoiseRatioContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)
    expected = mean_of_nonzero(pos) + mean_of_nonzero(neg)
    assert expected > 0 and loss_fn(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)


def test_unreduced_pair_losses():
    embeddings, labels = torch.tensor(EMBEDDINGS, dtype=torch.float64), torch.tensor(LABELS)
    pos, neg = hand_losses(0.1, 2.0)
    out = SignalToNoiseRatioContrastiveLoss(
        pos_margin=0.1, neg_margin=2.0, reducer=DoNothingReducer()
    )(embeddings, labels)
    assert (
        out["pos_loss"]["reduction_type"] == "pos_pair"
        and out["neg_loss"]["reduction_type"] == "neg_pair"
    )
    torch.testing.assert_close(out["pos_loss"]["losses"], torch.tensor(pos, dtype=torch.float64))
    torch.testing.assert_close(out["neg_loss"]["losses"], torch.tensor(neg, dtype=torch.float64))


RECIPES = [
    lambda lib: {},
    lambda lib: {"reducer": lib.reducers.MeanReducer()},
    lambda lib: {
        "distance": lib.distances.SNRDistance(normalize_embeddings=False),
        "reducer": lib.reducers.SumReducer(),
    },
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    h.assert_matches_pml(
        SignalToNoiseRatioContrastiveLoss,
        dtype,
        recipe,
        with_ref=with_ref,
        pos_margin=0.1,
        neg_margin=0.9,
    )


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(
        SignalToNoiseRatioContrastiveLoss, dtype, indices=indices, with_ref=with_ref, neg_margin=1.2
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(SignalToNoiseRatioContrastiveLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: SignalToNoiseRatioContrastiveLoss())
    h.assert_float32_agrees_with_float64(
        lambda: SignalToNoiseRatioContrastiveLoss(neg_margin=0.8),
        indices=h.mined_pairs,
        with_ref=True,
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: SignalToNoiseRatioContrastiveLoss())


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: SignalToNoiseRatioContrastiveLoss(), h.mined_triplets)


def test_zero_loss_when_every_pair_is_satisfied():
    embeddings, labels = torch.tensor(EMBEDDINGS, dtype=torch.float64), torch.tensor(LABELS)
    loss_fn = SignalToNoiseRatioContrastiveLoss(pos_margin=10, neg_margin=0, reducer=MeanReducer())
    h.assert_zero_loss_with_gradient(loss_fn, embeddings, labels)


@pytest.mark.parametrize("distance", [LpDistance(), CosineSimilarity()])
def test_other_distances_are_rejected(distance):
    with pytest.raises(ValueError, match=r"SignalToNoiseRatioContrastiveLoss needs SNRDistance"):
        SignalToNoiseRatioContrastiveLoss(distance=distance)


def test_is_a_contrastive_loss_as_in_pml():
    assert isinstance(SignalToNoiseRatioContrastiveLoss(), ContrastiveLoss)
