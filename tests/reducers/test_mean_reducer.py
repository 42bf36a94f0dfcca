import pytest
import torch

from metric_runner.reducers import MeanReducer
from tests.reducers.reducer_helpers import (
    LABELS,
    REDUCED_TYPES,
    assert_empty_losses_give_zero_with_backward,
    assert_matches_pml,
    embeddings,
    loss_dict,
    reduce_with_grad,
)


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_mean_of_all_losses_by_hand(dtype, reduction_type):
    value, grad = reduce_with_grad(MeanReducer(), reduction_type, dtype=dtype)
    assert value.item() == pytest.approx(10.5 / 6)
    torch.testing.assert_close(grad, torch.full((6,), 1 / 6, dtype=dtype))


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_empty_losses_give_zero(reduction_type):
    assert_empty_losses_give_zero_with_backward(MeanReducer(), reduction_type)


def test_already_reduced_passes_through():
    loss = torch.tensor(2.5, requires_grad=True)
    assert (
        MeanReducer()(loss_dict(loss, "already_reduced", indices=None), embeddings(), LABELS)
        is loss
    )


def test_zero_loss_literal_gives_differentiable_zero():
    emb = embeddings()
    reduced = MeanReducer()(loss_dict(0, "already_reduced", indices=None), emb, LABELS)
    assert reduced.item() == 0 and reduced.requires_grad


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_matches_pml(pml_reducers, dtype, reduction_type):
    assert_matches_pml(MeanReducer(), pml_reducers.MeanReducer(), reduction_type, dtype)
