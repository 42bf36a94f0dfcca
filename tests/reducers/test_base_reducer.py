import pytest
import torch

from metric_runner.reducers import BaseReducer, ClassWeightedReducer, MeanReducer
from metric_runner.utils import loss_and_miner_utils as lmu
from tests.reducers.reducer_helpers import (
    ANCHORS,
    LABELS,
    LOSS_VALUES,
    POSITIVES,
    embeddings,
    loss_dict,
    losses,
)


class FirstLossReducer(BaseReducer):
    """A user-defined reducer written against PML's signature (no **kwargs)."""

    def element_reduction(self, losses, loss_indices, embeddings, labels):
        return losses[0]


def test_user_reducer_with_pml_signature_works_for_every_type():
    for reduction_type in ("element", "pos_pair", "neg_pair", "triplet"):
        reduced = FirstLossReducer()(loss_dict(losses(), reduction_type), embeddings(), LABELS)
        assert reduced.item() == 0.0


def test_reducer_without_element_reduction_says_so():
    with pytest.raises(NotImplementedError, match="element_reduction"):
        BaseReducer()(loss_dict(losses(), "element"), embeddings(), LABELS)


@pytest.mark.parametrize(
    "reduction_type, indices, message",
    [
        ("element", torch.arange(5), "one index per loss"),
        ("element", None, "one index per loss"),
        ("pos_pair", (ANCHORS,), "tuple of 2 index tensors"),
        ("pos_pair", (ANCHORS, POSITIVES[:5]), "tuple of 2 index tensors"),
        ("neg_pair", ANCHORS, "tuple of 2 index tensors"),
        ("triplet", (ANCHORS, POSITIVES), "tuple of 3 index tensors"),
    ],
)
def test_indices_that_do_not_match_the_losses_are_rejected(reduction_type, indices, message):
    sub_loss = {"loss": {"losses": losses(), "indices": indices, "reduction_type": reduction_type}}
    with pytest.raises(ValueError, match=message):
        MeanReducer()(sub_loss, embeddings(), LABELS)


def test_already_reduced_must_be_a_single_value():
    with pytest.raises(ValueError, match="single value"):
        MeanReducer()(loss_dict(losses(), "already_reduced"), embeddings(), LABELS)


def test_unknown_reduction_type_is_rejected():
    with pytest.raises(ValueError, match="Unknown reduction_type 'pairs'"):
        MeanReducer()(
            {"loss": {"losses": losses(), "indices": ANCHORS, "reduction_type": "pairs"}},
            embeddings(),
            LABELS,
        )


def test_several_sub_losses_need_multiple_reducers():
    sub_losses = {
        **loss_dict(losses(), "element", name="a"),
        **loss_dict(losses(), "element", name="b"),
    }
    with pytest.raises(ValueError, match="MultipleReducers"):
        MeanReducer()(sub_losses, embeddings(), LABELS)


def test_losses_size_stat_is_recorded_and_reset():
    reducer = MeanReducer(collect_stats=True)
    reducer(loss_dict(losses(), "pos_pair"), embeddings(), LABELS)
    assert reducer.losses_size == 6
    assert reducer._record_these_stats == ["losses_size"]
    reducer.reset_stats()
    assert reducer.losses_size == 0


def lazy_pairs(lengths):
    built = []
    builders = [lambda: built.append(0) or ANCHORS, lambda: built.append(1) or POSITIVES]
    return lmu.LazyIndexTuple(builders, lengths), built


def test_lazy_indices_are_checked_without_being_built():
    indices, built = lazy_pairs([6, 6])
    reduced = MeanReducer()(loss_dict(losses(), "pos_pair", indices=indices), embeddings(), LABELS)
    assert reduced.item() == pytest.approx(sum(LOSS_VALUES) / 6) and built == []
    wrong, built = lazy_pairs([6, 5])
    with pytest.raises(ValueError, match=r"lengths \[6, 5\]"):
        MeanReducer()(loss_dict(losses(), "pos_pair", indices=wrong), embeddings(), LABELS)
    assert built == []


def test_reducers_that_need_indices_build_them():
    indices, built = lazy_pairs([6, 6])
    reducer = ClassWeightedReducer(torch.tensor([1.0, 2.0, 3.0]))
    reduced = reducer(loss_dict(losses(), "pos_pair", indices=indices), embeddings(), LABELS)
    # Anchors 0, 0, 1, 3, 3, 5 have classes 0, 0, 0, 1, 1, 2.
    assert reduced.item() == pytest.approx((0 + 1 + 2 + 6 + 1 + 12) / 6) and built == [0]
