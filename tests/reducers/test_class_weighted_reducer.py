import pytest
import torch

from metric_runner.reducers import ClassWeightedReducer
from tests.reducers.reducer_helpers import (
    LABELS,
    REDUCED_TYPES,
    assert_empty_losses_give_zero_with_backward,
    assert_matches_pml,
    embeddings,
    loss_dict,
    losses,
    reduce_with_grad,
)

WEIGHTS = [1.0, 2.0, 3.0]


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_weights_of_anchor_classes_by_hand(dtype, reduction_type):
    # Anchors 0, 0, 1, 3, 3, 5 have classes 0, 0, 0, 1, 1, 2 -> weights 1, 1, 1, 2, 2, 3.
    value, grad = reduce_with_grad(
        ClassWeightedReducer(torch.tensor(WEIGHTS)), reduction_type, dtype=dtype
    )
    anchor_weights = torch.tensor([1, 1, 1, 2, 2, 3], dtype=dtype)
    assert value.item() == pytest.approx((0 + 1 + 2 + 6 + 1 + 12) / 6)
    torch.testing.assert_close(grad, anchor_weights / 6)


def test_element_losses_use_each_element_class():
    reducer = ClassWeightedReducer(WEIGHTS)  # a list works as well as a tensor
    reduced = reducer(loss_dict(losses(), "element", indices=torch.arange(6)), embeddings(), LABELS)
    # Elements 0..5 have classes 0, 0, 1, 1, 2, 2.
    assert reduced.item() == pytest.approx((0 + 1 + 4 + 6 + 1.5 + 12) / 6)


def test_labels_are_required():
    with pytest.raises(ValueError, match="needs labels"):
        ClassWeightedReducer(WEIGHTS)(loss_dict(losses(), "pos_pair"), embeddings(), None)


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_empty_losses_give_zero(reduction_type):
    assert_empty_losses_give_zero_with_backward(ClassWeightedReducer(WEIGHTS), reduction_type)


@pytest.mark.parametrize("reduction_type", REDUCED_TYPES)
def test_matches_pml(pml_reducers, dtype, reduction_type):
    weights = torch.tensor([0.5, 2.0, 3.0])
    ours, theirs = ClassWeightedReducer(weights), pml_reducers.ClassWeightedReducer(weights)
    assert_matches_pml(ours, theirs, reduction_type, dtype)
