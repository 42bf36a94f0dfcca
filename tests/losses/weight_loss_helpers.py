"""Shared checks for the losses with learnable class weights (ArcFace, ProxyAnchor, ...).

Keyword arguments that hold components (distance, reducer, regularizer) are given as a function
of the library, `lambda lib: {"distance": lib.distances.CosineSimilarity()}`, so that ours and
pytorch-metric-learning's (PML's) losses each get their own instances from the same recipe.
"""

import importlib
import inspect
import math

import pytest
import torch

from tests.helpers import TEST_DEVICE, assert_close, clustered_embeddings

NUM_CLASSES = 6
DIM = 8
# A tiny case in 2D: embeddings and class weights at known angles and norms. The last sample
# sits 170° from its class (so ArcFace's θ_y + 30° passes π).
EMBEDDING_ANGLES = [10, 100, 200, 170]
EMBEDDING_NORMS = [3.0, 1.0, 0.2, 2.0]
LABELS = [0, 1, 2, 0]
CLASS_ANGLES = [0, 120, 240]
CLASS_NORMS = [2.0, 0.5, 1.0]


def at_angle(degrees, norm):
    return [norm * math.cos(math.radians(degrees)), norm * math.sin(math.radians(degrees))]


def angle_between(a, b):
    return math.radians(abs((a - b + 180) % 360 - 180))


def tiny_case():
    """(embeddings (4, 2), labels (4,), class weights (2, 3)) in float64."""
    embeddings = [at_angle(a, n) for a, n in zip(EMBEDDING_ANGLES, EMBEDDING_NORMS)]
    weights = [at_angle(a, n) for a, n in zip(CLASS_ANGLES, CLASS_NORMS)]
    return (
        torch.tensor(embeddings, dtype=torch.float64),
        torch.tensor(LABELS),
        torch.tensor(weights, dtype=torch.float64).t(),
    )


def hand_softmax_loss(logit):
    """Mean cross-entropy over the tiny case, written out: logit(i, j, θ_ij) gives sample i's
    logit for class j, θ_ij the angle between them."""
    total = 0.0
    for i, (angle, label) in enumerate(zip(EMBEDDING_ANGLES, LABELS)):
        logits = [logit(i, j, angle_between(angle, c)) for j, c in enumerate(CLASS_ANGLES)]
        total += math.log(sum(math.exp(x) for x in logits)) - logits[label]
    return total / len(LABELS)


WEIGHT_NAMES = {
    "ProxyNCALoss": "proxies",
    "ProxyAnchorLoss": "proxies",
    "SoftTripleLoss": "fc",
    "P2SGradLoss": "weight",
}


def weight_name(cls):
    return WEIGHT_NAMES.get(cls.__name__, "W")


def sizes(cls, num_classes=NUM_CLASSES, dim=DIM):
    if cls.__name__ == "P2SGradLoss":
        return {"descriptors_dim": dim, "num_classes": num_classes}
    return {"num_classes": num_classes, "embedding_size": dim}


def pml_root():
    root = pytest.importorskip("pytorch_metric_learning")
    with_submodules(root.__name__)
    return root


def with_submodules(root_name):
    """The package with the component subpackages the recipes use already imported."""
    for sub in ("distances", "losses", "reducers", "regularizers"):
        importlib.import_module(f"{root_name}.{sub}")
    return importlib.import_module(root_name)


def pml_class(cls):
    import pytorch_metric_learning.losses

    return getattr(pytorch_metric_learning.losses, cls.__name__)


def build_pair(cls, dtype, components=None, **kwargs):
    """(ours, PML's) with the same arguments and the same weights (PML's random ones)."""
    pml = pml_root()
    components = components or (lambda lib: {})
    torch.manual_seed(0)  # PML draws its initial weights from the global generator
    theirs = pml_class(cls)(**sizes(cls), **components(pml), **kwargs).to(TEST_DEVICE, dtype)
    ours = cls(**sizes(cls), **components(with_submodules("metric_runner")), **kwargs).to(
        TEST_DEVICE, dtype
    )
    set_weight(ours, getattr(theirs, weight_name(cls)))
    return ours, theirs


def set_weight(loss, value):
    with torch.no_grad():
        getattr(loss, weight_name(type(loss))).copy_(torch.as_tensor(value))


def data(dtype, num_classes=NUM_CLASSES, per_class=3, seed=0):
    return clustered_embeddings(
        num_classes=num_classes, per_class=per_class, dim=DIM, dtype=dtype, seed=seed
    )


def value_and_grads(loss, embeddings, labels, indices_tuple=None):
    """(loss value, d/d embeddings, d/d weight)."""
    emb = embeddings.detach().clone().requires_grad_(True)
    weight = getattr(loss, weight_name(type(loss)))
    value = loss(emb, labels, indices_tuple)
    emb_grad, weight_grad = torch.autograd.grad(value, [emb, weight])
    return value.detach(), emb_grad, weight_grad


def assert_matches_pml(ours, theirs, embeddings, labels, dtype, indices_tuple=None, scale=10):
    our_value, our_emb_grad, our_weight_grad = value_and_grads(
        ours, embeddings, labels, indices_tuple
    )
    pml_value, pml_emb_grad, pml_weight_grad = value_and_grads(
        theirs, embeddings, labels, indices_tuple
    )
    assert our_value.dtype == dtype
    assert torch.isfinite(our_value)
    assert_close(our_value, pml_value, dtype, scale=scale)
    # Gradients: tolerances relative to the largest entry, since small entries of a large
    # gradient carry the rounding of the large ones.
    for ours, theirs in ((our_emb_grad, pml_emb_grad), (our_weight_grad, pml_weight_grad)):
        assert_close(ours, theirs, dtype, scale=scale * max(1.0, theirs.abs().max().item()))


def assert_same_signature_and_parameters(cls):
    """Constructor arguments with their defaults, the learnable parameters' names, shapes and
    default initialization, the default distance, and the class hierarchy are PML's."""
    theirs_cls = pml_class(cls)
    ours_params = inspect.signature(cls.__init__).parameters
    theirs_params = inspect.signature(theirs_cls.__init__).parameters
    for name, parameter in theirs_params.items():
        assert name in ours_params, f"{cls.__name__} lacks PML's argument {name!r}"
        assert ours_params[name].default == parameter.default, name
    ours = cls(**sizes(cls))
    theirs = theirs_cls(**sizes(cls))
    ours_shapes = {k: tuple(v.shape) for k, v in ours.named_parameters()}
    theirs_shapes = {k: tuple(v.shape) for k, v in theirs.named_parameters()}
    assert ours_shapes == theirs_shapes
    assert type(ours.distance).__name__ == type(theirs.distance).__name__
    assert ours.distance.power == theirs.distance.power
    # The default weight_init_func is PML's: from the same seed, the same initial weights.
    torch.manual_seed(1)
    ours_initial = getattr(cls(**sizes(cls)), weight_name(cls)).detach()
    torch.manual_seed(1)
    theirs_initial = getattr(theirs_cls(**sizes(cls)), weight_name(cls)).detach()
    torch.testing.assert_close(ours_initial, theirs_initial)
    custom = cls(**sizes(cls), weight_init_func=lambda w: torch.nn.init.constant_(w, 0.25))
    assert torch.all(getattr(custom, weight_name(cls)) == 0.25)
    # isinstance checks written against PML's hierarchy hold (ArcFaceLoss is a
    # LargeMarginSoftmaxLoss, ProxyNCALoss an NCALoss, ...).
    our_losses = with_submodules("metric_runner").losses
    for base in theirs_cls.__mro__:
        if base.__module__.startswith("pytorch_metric_learning.losses") and hasattr(
            our_losses, base.__name__
        ):
            assert issubclass(cls, getattr(our_losses, base.__name__)), base.__name__


def assert_weight_regularizers_match_pml(cls, dtype, regularizer_recipes, **kwargs):
    """Each weight regularizer adds the same weighted sub-loss (and gradients) as PML's."""
    embeddings, labels = data(dtype)
    for recipe in regularizer_recipes:
        ours, theirs = build_pair(
            cls,
            dtype,
            components=lambda lib, recipe=recipe: {"weight_regularizer": recipe(lib)},
            weight_reg_weight=0.7,
            **kwargs,
        )
        assert "weight_reg_loss" in ours.sub_loss_names()
        assert_matches_pml(ours, theirs, embeddings, labels, dtype)


def assert_float32_agrees_with_float64(cls, **kwargs):
    torch.manual_seed(0)
    loss64 = cls(**sizes(cls), **kwargs).to(TEST_DEVICE, torch.float64)
    loss32 = cls(**sizes(cls), **kwargs).to(TEST_DEVICE, torch.float32)
    set_weight(loss32, getattr(loss64, weight_name(cls)).float())
    embeddings, labels = data(torch.float64)
    value64, emb_grad64, weight_grad64 = value_and_grads(loss64, embeddings, labels)
    value32, emb_grad32, weight_grad32 = value_and_grads(loss32, embeddings.float(), labels)
    assert_close(value32, value64, torch.float32, scale=10)
    assert_close(emb_grad32, emb_grad64, torch.float32, scale=10)
    assert_close(weight_grad32, weight_grad64, torch.float32, scale=10)


def assert_float16_matches_pml(cls, **kwargs):
    """Half precision stays finite and close to PML's (which supports float16)."""
    ours, theirs = build_pair(cls, torch.float32, **kwargs)
    ours.half()
    theirs.half()
    embeddings, labels = data(torch.float16)
    our_value, our_emb_grad, our_weight_grad = value_and_grads(ours, embeddings, labels)
    pml_value, pml_emb_grad, _ = value_and_grads(theirs, embeddings, labels)
    assert our_value.dtype == torch.float16
    assert torch.isfinite(our_value)
    assert torch.isfinite(our_emb_grad).all() and torch.isfinite(our_weight_grad).all()
    torch.testing.assert_close(our_value.float(), pml_value.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(our_emb_grad.float(), pml_emb_grad.float(), rtol=5e-2, atol=5e-3)


def assert_float32_weights_take_float16_inputs(cls, **kwargs):
    """float32 weights with float16 embeddings: the weight is cast per call (it keeps its
    dtype) and receives a float32 gradient."""
    loss = cls(**sizes(cls), **kwargs).to(TEST_DEVICE)
    embeddings, labels = data(torch.float16)
    value, emb_grad, weight_grad = value_and_grads(loss, embeddings, labels)
    weight = getattr(loss, weight_name(cls))
    assert value.dtype == torch.float16 and weight.dtype == torch.float32
    assert weight_grad.dtype == torch.float32
    assert (
        torch.isfinite(value)
        and torch.isfinite(emb_grad).all()
        and torch.isfinite(weight_grad).all()
    )


def assert_autocast_close_to_float32(cls, **kwargs):
    """Under CPU autocast (bfloat16 matrix products) the loss and gradients stay finite and
    near the float32 ones.

    bfloat16 keeps 8 significant bits, so single gradient entries can be far off in relative
    terms; the check is on the whole gradient's relative error. The weights are seeded because
    a near-tie between two sub-centers (SubCenterArcFace) may flip under bfloat16 and move the
    gradient legitimately."""
    torch.manual_seed(0)
    loss = cls(**sizes(cls), **kwargs)
    embeddings, labels = data(torch.float32)
    value32, emb_grad32, _ = value_and_grads(loss, embeddings, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value, emb_grad, weight_grad = value_and_grads(loss, embeddings, labels)
    assert torch.isfinite(emb_grad).all() and torch.isfinite(weight_grad).all()
    torch.testing.assert_close(value.float(), value32, rtol=5e-2, atol=5e-2)
    relative_error = (emb_grad.float() - emb_grad32).norm() / emb_grad32.norm()
    assert relative_error < 0.1, f"bfloat16 gradient off by {relative_error:.1%} of its norm"


def assert_common_input_errors(cls, **kwargs):
    """labels missing, ref_emb given, labels out of range, the wrong embedding size, and bad
    sizes each raise one ValueError that names the problem."""
    loss = cls(**sizes(cls), **kwargs)
    embeddings, labels = data(torch.float32)
    with pytest.raises(ValueError, match="needs labels"):
        loss(embeddings, None, (labels[:1], labels[:1], labels[:1]))
    with pytest.raises(ValueError, match="ref_emb"):
        loss(embeddings, labels, ref_emb=embeddings[:4].detach(), ref_labels=labels[:4])
    bad_labels = labels.clone()
    bad_labels[0] = NUM_CLASSES
    with pytest.raises(ValueError, match=f"num_classes={NUM_CLASSES}"):
        loss(embeddings, bad_labels)
    with pytest.raises(ValueError, match=f"size {DIM + 1}"):
        loss(torch.randn(len(labels), DIM + 1), labels)
    with pytest.raises(TypeError, match="integer class indices"):
        loss(embeddings, labels.float())
    with pytest.raises(ValueError, match="num_classes"):
        cls(**sizes(cls, num_classes=0), **kwargs)


def assert_labels_on_cpu_are_moved(cls, **kwargs):
    """Labels on the CPU (or as int32) give the same loss as int64 labels on the device."""
    loss = cls(**sizes(cls), **kwargs).to(TEST_DEVICE, torch.float64)
    embeddings, labels = data(torch.float64)
    expected = loss(embeddings, labels)
    assert_close(loss(embeddings.to(TEST_DEVICE), labels.cpu()), expected, torch.float64)
    assert_close(loss(embeddings, labels.int()), expected, torch.float64)


def mined_tuples(labels):
    """A few (anchor, positive, negative) triplets and a pair tuple of the same indices."""
    labels = labels.tolist()
    anchors, positives, negatives = [], [], []
    for a, label in enumerate(labels):
        p = next((j for j, other in enumerate(labels) if other == label and j != a), None)
        n = next(j for j, other in enumerate(labels) if other != label)
        if p is not None:
            anchors.append(a)
            positives.append(p)
            negatives.append(n)
        if len(anchors) == 5:
            break
    triplets = tuple(torch.tensor(x, device=TEST_DEVICE) for x in (anchors, positives, negatives))
    a, p, n = triplets
    pairs = (a[:3], p[:3], a[1:], n[1:])
    return triplets, pairs


def assert_mined_tuples_match_pml(cls, dtype, **kwargs):
    """Miner weights (how often each sample appears in the tuples) scale the losses as PML's."""
    ours, theirs = build_pair(cls, dtype, **kwargs)
    embeddings, labels = data(dtype)
    for indices_tuple in mined_tuples(labels):
        assert_matches_pml(ours, theirs, embeddings, labels, dtype, indices_tuple)


def assert_get_logits_matches_pml(cls, dtype, **kwargs):
    ours, theirs = build_pair(cls, dtype, **kwargs)
    embeddings, _ = data(dtype)
    assert_close(ours.get_logits(embeddings), theirs.get_logits(embeddings), dtype, scale=10)
