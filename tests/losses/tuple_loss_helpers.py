"""Shared checks for the pair and triplet losses (Contrastive, TripletMargin, MultiSimilarity,
NTXent, SupCon).

Keyword arguments that hold components (distance, reducer) are given as a function of the
library, `lambda lib: {"distance": lib.distances.CosineSimilarity()}`, so that ours and
pytorch-metric-learning's (PML's) losses each get their own instances from the same recipe.
"""

import importlib
import inspect

import pytest
import torch

from tests.helpers import TEST_DEVICE, assert_close, clustered_embeddings

# A tiny batch in the plane for hand-computed values: two points of class 0, two of class 1,
# one of class 2 (an anchor without positives).
TINY_EMBEDDINGS = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8], [-1.0, 0.0]]
TINY_LABELS = [0, 0, 1, 1, 2]


def tiny_batch(dtype=torch.float64):
    return torch.tensor(TINY_EMBEDDINGS, dtype=dtype), torch.tensor(TINY_LABELS)


def tiny_pairs(labels, ref_labels=None):
    """Every (i, j, same_label) of a batch, in plain Python: the reference set is the batch
    itself (without self pairs) unless `ref_labels` is given."""
    same_set = ref_labels is None
    ref_labels = labels if same_set else ref_labels
    return [
        (i, j, labels[i] == ref_labels[j])
        for i in range(len(labels))
        for j in range(len(ref_labels))
        if not (same_set and i == j)
    ]


def as_list(labels):
    return None if labels is None else labels.tolist()


def library(root_name):
    """The package with the component subpackages the recipes use already imported."""
    for sub in ("distances", "losses", "reducers", "regularizers"):
        importlib.import_module(f"{root_name}.{sub}")
    return importlib.import_module(root_name)


def pml_class(cls):
    pytest.importorskip("pytorch_metric_learning")
    return getattr(library("pytorch_metric_learning").losses, cls.__name__)


def build_pair(cls, components=None, **kwargs):
    """(ours, PML's) built from the same arguments."""
    components = components or (lambda lib: {})
    theirs = pml_class(cls)(**components(library("pytorch_metric_learning")), **kwargs)
    ours = cls(**components(library("metric_runner")), **kwargs)
    return ours, theirs


def data(dtype=torch.float64, num_classes=5, per_class=4, seed=0):
    return clustered_embeddings(
        num_classes=num_classes, per_class=per_class, dim=8, dtype=dtype, seed=seed
    )


def ref_data(dtype=torch.float64):
    """A reference set with other samples of the same classes (and a class the batch lacks)."""
    return data(dtype, num_classes=6, per_class=3, seed=1)


def mined_pairs(labels, ref_labels=None):
    """A pair tuple with repeated pairs and anchors that have only positives or only
    negatives, as a miner may return."""
    a1, p, a2, n = [], [], [], []
    for i, j, same in tiny_pairs(labels.tolist(), as_list(ref_labels)):
        if same and i % 3 != 2:
            a1.append(i), p.append(j)
        elif not same and i % 3 != 1 and (i + j) % 4 == 0:
            a2.append(i), n.append(j)
    a1, p = a1 + a1[:3], p + p[:3]
    a2, n = a2 + a2[-2:], n + n[-2:]
    return tuple(torch.tensor(x) for x in (a1, p, a2, n))


def mined_triplets(labels, ref_labels=None):
    """A triplet tuple with repeated triplets (so repeated pairs once converted)."""
    ref = labels if ref_labels is None else ref_labels
    a, p, n = [], [], []
    for i, j, same in tiny_pairs(labels.tolist(), as_list(ref_labels)):
        if same:
            negatives = [k for k in range(len(ref)) if ref[k] != labels[i]]
            for k in negatives[(i + j) % 3 :: 5]:
                a.append(i), p.append(j), n.append(k)
    a, p, n = a + a[:4], p + p[:4], n + n[:4]
    return tuple(torch.tensor(x) for x in (a, p, n))


def value_and_grads(loss, embeddings, labels, indices_tuple=None, ref=None):
    """(loss value, d/d embeddings, d/d ref_emb or None); `ref` is (ref_emb, ref_labels)."""
    emb = embeddings.detach().clone().requires_grad_(True)
    inputs = [emb]
    kwargs = {}
    if ref is not None:
        ref_emb = ref[0].detach().clone().requires_grad_(True)
        inputs.append(ref_emb)
        kwargs = {"ref_emb": ref_emb, "ref_labels": ref[1]}
    value = loss(emb, labels, indices_tuple, **kwargs)
    grads = torch.autograd.grad(value, inputs, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
    return value.detach(), grads[0], grads[1] if ref is not None else None


def assert_matches_pml(cls, dtype, components=None, indices=None, with_ref=False, **kwargs):
    """Value and gradients (of the embeddings and of ref_emb) equal PML's. `indices` is a
    function of the labels returning the indices_tuple."""
    ours, theirs = build_pair(cls, components, **kwargs)
    embeddings, labels = data(dtype)
    ref = ref_data(dtype) if with_ref else None
    indices_tuple = None if indices is None else indices(labels, None if ref is None else ref[1])
    our_value, our_grad, our_ref_grad = value_and_grads(
        ours, embeddings, labels, indices_tuple, ref
    )
    pml_value, pml_grad, pml_ref_grad = value_and_grads(
        theirs, embeddings, labels, indices_tuple, ref
    )
    assert our_value.dtype == dtype
    assert our_value.abs() > 0, "the case should exercise the loss"
    assert_close(our_value, pml_value, dtype, scale=10)
    assert_close(our_grad, pml_grad, dtype, scale=10)
    if with_ref:
        assert_close(our_ref_grad, pml_ref_grad, dtype, scale=10)


def assert_float32_agrees_with_float64(make_loss, indices=None, with_ref=False):
    embeddings, labels = data(torch.float64)
    ref = ref_data(torch.float64) if with_ref else None
    indices_tuple = None if indices is None else indices(labels, None if ref is None else ref[1])
    value64, grad64, _ = value_and_grads(make_loss(), embeddings, labels, indices_tuple, ref)
    ref32 = None if ref is None else (ref[0].float(), ref[1])
    value32, grad32, _ = value_and_grads(
        make_loss(), embeddings.float(), labels, indices_tuple, ref32
    )
    assert value32.dtype == torch.float32
    assert_close(value32, value64, torch.float32, scale=10)
    assert_close(grad32, grad64, torch.float32, scale=10)


def assert_float16_close_to_float32(make_loss, atol=2e-2):
    """Half precision on the test device (CPU included) stays finite and near float32."""
    embeddings, labels = data(torch.float32)
    value32, grad32, _ = value_and_grads(make_loss(), embeddings.to(TEST_DEVICE), labels)
    value16, grad16, _ = value_and_grads(
        make_loss(), embeddings.to(TEST_DEVICE, torch.float16), labels
    )
    assert value16.dtype == torch.float16
    assert torch.isfinite(value16) and torch.isfinite(grad16).all()
    torch.testing.assert_close(value16.float(), value32, rtol=2e-2, atol=atol)
    torch.testing.assert_close(grad16.float(), grad32, rtol=5e-2, atol=atol)


def assert_labels_on_cpu_are_moved(make_loss, indices=None):
    """Embeddings on the test device with labels (and mined indices) left on the CPU."""
    embeddings, labels = data(torch.float32)
    indices_tuple = None if indices is None else indices(labels)
    expected = make_loss()(embeddings, labels, indices_tuple)
    moved = embeddings.detach().to(TEST_DEVICE)
    assert_close(make_loss()(moved, labels.cpu(), indices_tuple).cpu(), expected)


def assert_same_signature_as_pml(cls):
    """Constructor arguments with their defaults, the default distance and the default
    reducer(s) are PML's."""
    theirs_cls = pml_class(cls)
    ours_params = inspect.signature(cls.__init__).parameters
    for name, parameter in inspect.signature(theirs_cls.__init__).parameters.items():
        assert name in ours_params, f"{cls.__name__} lacks PML's argument {name!r}"
        assert ours_params[name].default == parameter.default, name
    ours, theirs = cls(), theirs_cls()
    assert type(ours.distance).__name__ == type(theirs.distance).__name__
    assert ours.sub_loss_names() == theirs.sub_loss_names()
    assert type(ours.reducer).__name__ == type(theirs.reducer).__name__
    if hasattr(theirs.reducer, "reducers"):
        assert {k: type(v).__name__ for k, v in ours.reducer.reducers.items()} == {
            k: type(v).__name__ for k, v in theirs.reducer.reducers.items()
        }


def assert_zero_loss_with_gradient(loss, embeddings, labels, indices_tuple=None):
    """No valid tuple: the loss is 0 and backward() still works (zero gradient)."""
    emb = embeddings.detach().clone().requires_grad_(True)
    value = loss(emb, labels, indices_tuple)
    value.backward()
    assert value.item() == 0
    assert emb.grad is not None and torch.count_nonzero(emb.grad) == 0
