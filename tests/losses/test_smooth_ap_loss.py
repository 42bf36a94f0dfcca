import math

import pytest
import torch

from metric_runner.distances import DotProductSimilarity, LpDistance
from metric_runner.losses import SmoothAPLoss, smooth_ap_loss
from metric_runner.reducers import DoNothingReducer
from tests.helpers import assert_close
from tests.losses import tuple_loss_helpers as h

# Six points on the unit circle, classes interleaved and of different sizes.
CIRCLE_ANGLES = [0, 20, 100, 150, 200, 300]
CIRCLE_LABELS = [0, 1, 0, 2, 1, 0]


def circle_batch():
    points = [[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in CIRCLE_ANGLES]
    return torch.tensor(points, dtype=torch.float64), torch.tensor(CIRCLE_LABELS)


def hand_query_losses(embeddings, labels, temperature):
    """{query: 1 − AP_q} with AP_q = 1/|P| Σ_{i∈P} (1 + Σ_{j∈P, j≠i} G) / (1 + Σ_{j≠i} G),
    G = sigmoid((s_qj − s_qi) / τ), the query in its own P; queries alone in their class skip."""
    x, labels = embeddings.tolist(), labels.tolist()

    def sim(a, b):
        return sum(u * v for u, v in zip(x[a], x[b]))

    def sigmoid(z):
        return 1 / (1 + math.exp(-z))

    losses = {}
    for q in range(len(x)):
        positives = [i for i in range(len(x)) if labels[i] == labels[q]]
        if len(positives) < 2:
            continue
        ap = 0.0
        for i in positives:
            above = {
                j: sigmoid((sim(q, j) - sim(q, i)) / temperature) for j in range(len(x)) if j != i
            }
            ap += (1 + sum(above[j] for j in positives if j != i)) / (1 + sum(above.values()))
        losses[q] = 1 - ap / len(positives)
    return losses


@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
def test_hand_computed_per_query_losses_with_unequal_interleaved_classes(temperature):
    embeddings, labels = circle_batch()
    expected = hand_query_losses(embeddings, labels, temperature)
    out = SmoothAPLoss(temperature=temperature, reducer=DoNothingReducer())(embeddings, labels)[
        "ap_loss"
    ]
    assert out["reduction_type"] == "element"
    assert out["indices"].tolist() == sorted(expected)  # the lone class-2 query has no term
    torch.testing.assert_close(
        out["losses"], torch.tensor([expected[q] for q in sorted(expected)], dtype=torch.float64)
    )
    got = SmoothAPLoss(temperature=temperature)(embeddings, labels)
    assert got.item() == pytest.approx(sum(expected.values()) / len(expected), rel=1e-12)


def test_permuting_the_batch_permutes_the_losses():
    embeddings, labels = circle_batch()
    perm = torch.tensor([3, 5, 0, 4, 1, 2])
    loss_fn = SmoothAPLoss(temperature=0.2, reducer=DoNothingReducer())
    out = loss_fn(embeddings, labels)["ap_loss"]
    out_perm = loss_fn(embeddings[perm], labels[perm])["ap_loss"]
    by_sample = dict(zip(out["indices"].tolist(), out["losses"].tolist()))
    by_sample_perm = dict(zip(perm[out_perm["indices"]].tolist(), out_perm["losses"].tolist()))
    assert by_sample == pytest.approx(by_sample_perm, rel=1e-12)


def test_chunked_ranks_equal_unchunked(monkeypatch):
    # Chunks of two (query, positive) pairs, each recomputed in backward.
    embeddings, labels = h.data(torch.float64)
    whole = h.value_and_grads(SmoothAPLoss(temperature=0.05), embeddings, labels)
    monkeypatch.setattr(smooth_ap_loss, "MAX_CHUNK_ELEMENTS", 2 * len(embeddings))
    chunked = h.value_and_grads(SmoothAPLoss(temperature=0.05), embeddings, labels)
    torch.testing.assert_close(chunked[0], whole[0])
    torch.testing.assert_close(chunked[1], whole[1])


def grouped_data(dtype, num_classes):
    """PML 2.9 reads the classes from positions (equal consecutive groups of as many samples
    as there are classes), not from the labels: parity needs sorted labels and that shape."""
    embeddings, labels = h.data(dtype, num_classes=num_classes, per_class=num_classes)
    order = torch.argsort(labels, stable=True)
    return embeddings.detach()[order], labels[order]


RECIPES = [
    lambda lib: {},
    lambda lib: {"reducer": lib.reducers.SumReducer()},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize(("temperature", "num_classes"), [(0.05, 4), (0.5, 5)])
@pytest.mark.parametrize("indices", [None, h.mined_triplets])
def test_matches_pml(pml, dtype, recipe, temperature, num_classes, indices):
    ours, theirs = h.build_pair(SmoothAPLoss, recipe, temperature=temperature)
    embeddings, labels = grouped_data(dtype, num_classes)
    indices_tuple = None if indices is None else indices(labels)
    our_value, our_grad, _ = h.value_and_grads(ours, embeddings, labels, indices_tuple)
    pml_value, pml_grad, _ = h.value_and_grads(theirs, embeddings, labels, indices_tuple)
    assert our_value.dtype == dtype and our_value > 0
    assert_close(our_value, pml_value, torch.float32, scale=10)  # PML returns float32
    assert_close(our_grad, pml_grad, dtype, scale=10)


def test_signature_and_defaults_match_pml(pml):
    theirs = h.pml_class(SmoothAPLoss)()
    ours = SmoothAPLoss()
    assert ours.temperature == theirs.temperature == 0.01
    assert type(ours.distance).__name__ == type(theirs.distance).__name__
    assert type(ours.reducer).__name__ == type(theirs.reducer).__name__
    # PML 2.9 names its sub-loss "loss" but returns it as "ap_loss"; ours says "ap_loss" in both.
    assert ours.sub_loss_names() == ["ap_loss"]


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: SmoothAPLoss(temperature=0.1))
    h.assert_float32_agrees_with_float64(
        lambda: SmoothAPLoss(temperature=0.1), indices=h.mined_pairs
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: SmoothAPLoss(temperature=0.1))


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: SmoothAPLoss(temperature=0.1), h.mined_triplets)


def test_zero_loss_when_every_class_has_one_sample():
    embeddings, labels = h.tiny_batch()
    h.assert_zero_loss_with_gradient(SmoothAPLoss(), embeddings, torch.arange(len(labels)))


@pytest.mark.parametrize("distance", [LpDistance(), DotProductSimilarity()])
def test_other_distances_are_rejected(distance):
    with pytest.raises(ValueError, match=r"SmoothAPLoss needs CosineSimilarity"):
        SmoothAPLoss(distance=distance)


def test_bad_input_errors():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="needs labels"):
        SmoothAPLoss()(embeddings, None, h.mined_pairs(labels))
    # PML 2.9 silently ignores ref_emb here; ranking against another set is not this loss.
    with pytest.raises(ValueError, match="ref_emb"):
        SmoothAPLoss()(embeddings, labels, ref_emb=embeddings[:3], ref_labels=labels[:3])
