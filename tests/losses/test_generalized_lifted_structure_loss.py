import functools
import math

import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.losses import GeneralizedLiftedStructureLoss
from metric_runner.reducers import DoNothingReducer
from tests.helpers import assert_close
from tests.losses import tuple_loss_helpers as h


def log_sum_exp(values):
    """log Σ exp, and 0 for an empty set (as the loss treats an anchor without positives)."""
    return math.log(sum(math.exp(v) for v in values)) if values else 0.0


def hand_anchor_losses(embeddings, labels, neg_margin, pos_margin, similarity=False):
    """[log Σ_p exp(d_ap − pos_margin) + log Σ_n exp(neg_margin − d_an)]_+ per anchor; with a
    similarity s the terms are pos_margin − s_ap and s_an − neg_margin."""
    x = embeddings.tolist()
    losses = []
    for a in range(len(x)):
        pos_terms, neg_terms = [], []
        for j in range(len(x)):
            if j == a:
                continue
            if similarity:
                s = sum(u * v for u, v in zip(x[a], x[j]))
                pos_term, neg_term = pos_margin - s, s - neg_margin
            else:
                d = math.dist(x[a], x[j])
                pos_term, neg_term = d - pos_margin, neg_margin - d
            if labels[j] == labels[a]:
                pos_terms.append(pos_term)
            else:
                neg_terms.append(neg_term)
        losses.append(max(log_sum_exp(pos_terms) + log_sum_exp(neg_terms), 0))
    return losses


@pytest.mark.parametrize("similarity", [False, True])
def test_hand_computed_value_and_unreduced_losses(similarity):
    embeddings, labels = h.tiny_batch()
    neg_margin, pos_margin = (0.3, 0.8) if similarity else (1.2, 0.1)
    distance = CosineSimilarity() if similarity else None
    expected = hand_anchor_losses(embeddings, labels.tolist(), neg_margin, pos_margin, similarity)
    loss_fn = GeneralizedLiftedStructureLoss(
        neg_margin=neg_margin, pos_margin=pos_margin, distance=distance
    )
    assert loss_fn(embeddings, labels).item() == pytest.approx(
        sum(expected) / len(expected), rel=1e-12
    )
    loss_fn.reducer = DoNothingReducer()
    out = loss_fn(embeddings, labels)["loss"]
    assert out["reduction_type"] == "element" and out["indices"].tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(out["losses"], torch.tensor(expected, dtype=torch.float64))


def test_hinge_clips_negative_sums_to_zero():
    # Tight classes far apart: both log-sums are negative, so every anchor's loss is 0.
    embeddings = torch.tensor(
        [[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], dtype=torch.float64
    )
    labels = torch.tensor([0, 0, 1, 1])
    loss_fn = GeneralizedLiftedStructureLoss(neg_margin=0.5, pos_margin=1.0)
    h.assert_zero_loss_with_gradient(loss_fn, embeddings, labels)


RECIPES = [
    lambda lib: {},
    lambda lib: {
        "distance": lib.distances.CosineSimilarity(),
        "reducer": lib.reducers.SumReducer(),
    },
    lambda lib: {
        "distance": lib.distances.LpDistance(power=2),
        "reducer": lib.reducers.AvgNonZeroReducer(),
    },
    lambda lib: {"distance": lib.distances.SNRDistance()},
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml(pml, dtype, recipe, with_ref):
    h.assert_matches_pml(
        GeneralizedLiftedStructureLoss,
        dtype,
        recipe,
        with_ref=with_ref,
        neg_margin=0.6,
        pos_margin=0.2,
    )


@pytest.mark.parametrize("indices", [h.mined_pairs, h.mined_triplets])
@pytest.mark.parametrize("with_ref", [False, True])
def test_matches_pml_with_mined_tuples(pml, dtype, indices, with_ref):
    h.assert_matches_pml(
        GeneralizedLiftedStructureLoss, dtype, indices=indices, with_ref=with_ref, neg_margin=0.8
    )


def test_signature_and_defaults_match_pml(pml):
    h.assert_same_signature_as_pml(GeneralizedLiftedStructureLoss)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(lambda: GeneralizedLiftedStructureLoss())
    h.assert_float32_agrees_with_float64(
        lambda: GeneralizedLiftedStructureLoss(neg_margin=0.5), indices=h.mined_pairs, with_ref=True
    )


def test_float16_close_to_float32():
    h.assert_float16_close_to_float32(lambda: GeneralizedLiftedStructureLoss())


def test_labels_on_another_device():
    h.assert_labels_on_cpu_are_moved(lambda: GeneralizedLiftedStructureLoss(), h.mined_triplets)


def test_bad_indices_tuple_is_rejected():
    embeddings, labels = h.tiny_batch()
    with pytest.raises(ValueError, match="4-tuple"):
        GeneralizedLiftedStructureLoss()(embeddings, labels, (labels, labels))


@pytest.mark.parametrize("similarity", [False, True])
@pytest.mark.parametrize("indices", [None, h.mined_pairs])
@pytest.mark.parametrize("with_ref", [False, True])
def test_hand_written_backward_matches_finite_differences(similarity, indices, with_ref):
    # The backward scales the softmax weights saved by the forward: positives located by
    # position and negatives by mask (all pairs), or both by mask (mined pairs).
    embeddings, labels = h.data(num_classes=3, per_class=3)
    labels = labels.clone()
    labels[0] = 99  # an anchor without positives
    ref_emb, ref_labels = h.ref_data() if with_ref else (None, None)
    indices_tuple = None if indices is None else indices(labels, ref_labels)
    loss_fn = GeneralizedLiftedStructureLoss(
        neg_margin=0.3 if similarity else 1.1,
        pos_margin=0.8 if similarity else 0.2,
        distance=CosineSimilarity() if similarity else None,
    )
    inputs = [embeddings.clone().requires_grad_(True)]
    if with_ref:
        inputs.append(ref_emb.clone().requires_grad_(True))

    def loss(*tensors):
        ref = {"ref_emb": tensors[1], "ref_labels": ref_labels} if with_ref else {}
        return loss_fn(tensors[0], labels, indices_tuple, **ref)

    assert loss(*inputs).item() > 0
    assert torch.autograd.gradcheck(loss, inputs)


def test_second_backward_of_a_retained_graph_gives_the_same_gradient():
    # The backward must leave the saved softmax weights untouched.
    embeddings, labels = h.data()
    embeddings.requires_grad_(True)
    loss = GeneralizedLiftedStructureLoss()(embeddings, labels)
    first = torch.autograd.grad(loss, embeddings, retain_graph=True)[0]
    assert torch.equal(torch.autograd.grad(loss, embeddings)[0], first)


def test_anchors_without_negatives_have_a_zero_negative_log_sum():
    embeddings, _ = h.tiny_batch()
    labels = torch.zeros(len(embeddings), dtype=torch.long)
    loss_fn = GeneralizedLiftedStructureLoss(neg_margin=1.2, pos_margin=-0.5)
    expected = hand_anchor_losses(embeddings, labels.tolist(), 1.2, -0.5)
    assert min(expected) > 0
    loss_fn.reducer = DoNothingReducer()
    losses = loss_fn(embeddings, labels)["loss"]["losses"]
    torch.testing.assert_close(losses, torch.tensor(expected, dtype=torch.float64))


def test_inside_cross_batch_memory_matches_pml(pml, dtype):
    # CrossBatchMemory hands over all pairs located in the batch × memory matrix (self
    # comparisons removed, or not with an enqueue mask), read without index tensors.
    ours, theirs = (
        lib.losses.CrossBatchMemory(
            lib.losses.GeneralizedLiftedStructureLoss(neg_margin=0.8, pos_margin=0.1),
            8,
            memory_size=20,
        )
        for lib in (h.library("metric_runner"), pml)
    )
    generator = torch.Generator().manual_seed(0)
    for step in range(5):
        emb = torch.randn(6, 8, generator=generator, dtype=dtype)
        labels = torch.randint(0, 3, (6,), generator=generator)
        mask = torch.tensor([True, False, True, True, False, True]) if step == 2 else None
        results = [
            h.value_and_grads(functools.partial(loss_fn, enqueue_mask=mask), emb, labels)
            for loss_fn in (ours, theirs)
        ]
        assert results[0][0] > 0
        assert_close(results[0][0], results[1][0], dtype, scale=10)
        assert_close(results[0][1], results[1][1], dtype, scale=10)
