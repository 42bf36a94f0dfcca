import math

import pytest
import torch

from metric_runner.losses import ProxyAnchorLoss
from metric_runner.reducers import DivisorReducer
from tests.losses import weight_loss_helpers as h

EXTRA_PROXY_ANGLE = 60  # a fourth class with no sample in the batch


def tiny_proxy_case():
    embeddings, labels, weights = h.tiny_case()
    proxies = torch.cat(
        [weights.t(), torch.tensor([h.at_angle(EXTRA_PROXY_ANGLE, 1.5)], dtype=torch.float64)]
    )
    return embeddings, labels, proxies


def hand_computed_proxy_anchor(margin, alpha, sample_weights=(1, 1, 1, 1)):
    """Both halves written out; miner weights w enter the exponents as w - 1."""
    proxy_angles = h.CLASS_ANGLES + [EXTRA_PROXY_ANGLE]
    pos_total, neg_total, proxies_with_positives = 0.0, 0.0, 0
    for c, proxy_angle in enumerate(proxy_angles):
        pos_sum, neg_sum, has_positive = 0.0, 0.0, False
        for angle, label, w in zip(h.EMBEDDING_ANGLES, h.LABELS, sample_weights):
            cos = math.cos(h.angle_between(angle, proxy_angle))
            if label == c:
                pos_sum += math.exp(-alpha * (cos - margin) + w - 1)
                has_positive = True
            else:
                neg_sum += math.exp(alpha * (cos + margin) + w - 1)
        pos_total += math.log(1 + pos_sum)
        neg_total += math.log(1 + neg_sum)
        proxies_with_positives += has_positive
    return pos_total / proxies_with_positives + neg_total / len(proxy_angles)


def test_hand_computed_value():
    embeddings, labels, proxies = tiny_proxy_case()
    loss_fn = ProxyAnchorLoss(num_classes=4, embedding_size=2, margin=0.2, alpha=4).double()
    h.set_weight(loss_fn, proxies)
    expected = hand_computed_proxy_anchor(0.2, 4)
    assert loss_fn(embeddings, labels).item() == pytest.approx(expected, rel=1e-12)
    assert isinstance(loss_fn.reducer.reducers["pos_loss"], DivisorReducer)


def test_hand_computed_value_with_mined_tuples():
    embeddings, labels, proxies = tiny_proxy_case()
    loss_fn = ProxyAnchorLoss(num_classes=4, embedding_size=2, margin=0.2, alpha=4).double()
    h.set_weight(loss_fn, proxies)
    # In the pairs (0, 3) and (0, 1), sample 0 appears twice, 1 and 3 once, 2 never: weights
    # 1, 0.5, 0, 0.5 (relative to the most used).
    pairs = (torch.tensor([0]), torch.tensor([3]), torch.tensor([0]), torch.tensor([1]))
    expected = hand_computed_proxy_anchor(0.2, 4, sample_weights=(1, 0.5, 0, 0.5))
    assert loss_fn(embeddings, labels, pairs).item() == pytest.approx(expected, rel=1e-12)


def test_signature_parameters_and_defaults_match_pml(pml):
    h.assert_same_signature_and_parameters(ProxyAnchorLoss)


@pytest.mark.parametrize(
    "components",
    [
        lambda lib: {},
        lambda lib: {"distance": lib.distances.LpDistance()},
        lambda lib: {"distance": lib.distances.DotProductSimilarity()},
        lambda lib: {"reducer": lib.reducers.MeanReducer()},
    ],
)
def test_matches_pml(pml, dtype, components):
    ours, theirs = h.build_pair(ProxyAnchorLoss, dtype, components=components, margin=0.2, alpha=16)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_default_arguments_match_pml(pml, dtype):
    ours, theirs = h.build_pair(ProxyAnchorLoss, dtype)
    embeddings, labels = h.data(dtype)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_classes_missing_from_the_batch_match_pml(pml, dtype):
    ours, theirs = h.build_pair(ProxyAnchorLoss, dtype)
    embeddings, labels = h.data(dtype, num_classes=h.NUM_CLASSES - 2)
    h.assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def test_mined_tuples_match_pml(pml, dtype):
    h.assert_mined_tuples_match_pml(ProxyAnchorLoss, dtype, alpha=8)


def test_weight_regularizers_match_pml(pml, dtype):
    h.assert_weight_regularizers_match_pml(
        ProxyAnchorLoss,
        dtype,
        [
            lambda lib: lib.regularizers.RegularFaceRegularizer(),
            lambda lib: lib.regularizers.CenterInvariantRegularizer(),
        ],
        alpha=8,
    )


def test_get_logits_matches_pml(pml, dtype):
    h.assert_get_logits_matches_pml(ProxyAnchorLoss, dtype)


def test_float32_agrees_with_float64():
    h.assert_float32_agrees_with_float64(ProxyAnchorLoss)


def test_float16_is_finite_and_matches_pml(pml):
    h.assert_float16_matches_pml(ProxyAnchorLoss)
    h.assert_float32_weights_take_float16_inputs(ProxyAnchorLoss)


def test_autocast_is_close_to_float32():
    h.assert_autocast_close_to_float32(ProxyAnchorLoss)


def test_batch_of_one_class_has_finite_gradients():
    # Every negative sum of that class's proxy is empty; nothing may turn into NaN.
    loss_fn = ProxyAnchorLoss(num_classes=3, embedding_size=4)
    embeddings = torch.randn(5, 4, requires_grad=True)
    loss = loss_fn(embeddings, torch.zeros(5, dtype=torch.long))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()
    assert torch.isfinite(loss_fn.proxies.grad).all()


def test_labels_on_cpu_are_moved():
    h.assert_labels_on_cpu_are_moved(ProxyAnchorLoss)


def test_bad_input_errors():
    h.assert_common_input_errors(ProxyAnchorLoss)
