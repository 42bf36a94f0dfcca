"""Shared checks for the distance tests: the same random data through our distance and PML's."""

import torch

from tests.helpers import assert_close, clustered_embeddings

# Three 2-D rows with easy hand arithmetic: unit-normalized they are (.6, .8), (1, 0), (0, -1).
QUERY_3X2 = [[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]]


def query_3x2(dtype=torch.float64):
    return torch.tensor(QUERY_3X2, dtype=dtype)


def value_and_grads(distance, query, ref=None):
    """The matrix, and the gradients of a weighted sum of it w.r.t. query (and ref)."""
    query = query.detach().clone().requires_grad_(True)
    ref = None if ref is None else ref.detach().clone().requires_grad_(True)
    mat = distance(query, ref)
    weights = torch.linspace(-1, 1, mat.numel(), dtype=mat.dtype).view_as(mat)
    inputs = [query] if ref is None else [query, ref]
    grads = torch.autograd.grad(torch.sum(mat * weights), inputs)
    return mat.detach(), grads


def assert_matches_pml(ours, theirs, dtype):
    """Values and gradients agree with PML's distance, with and without ref_emb."""
    query, _ = clustered_embeddings(num_classes=4, per_class=3, dim=8, seed=1, dtype=dtype)
    ref, _ = clustered_embeddings(num_classes=3, per_class=3, dim=8, seed=2, dtype=dtype)
    for ref_emb in (None, ref):
        our_mat, our_grads = value_and_grads(ours, query, ref_emb)
        pml_mat, pml_grads = value_and_grads(theirs, query, ref_emb)
        assert our_mat.dtype == dtype
        assert_close(our_mat, pml_mat, dtype)
        for our_grad, pml_grad in zip(our_grads, pml_grads):
            assert_close(our_grad, pml_grad, dtype, scale=10)
