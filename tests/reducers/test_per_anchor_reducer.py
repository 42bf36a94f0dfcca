import pytest
import torch

from metric_runner.reducers import AvgNonZeroReducer, DoNothingReducer, PerAnchorReducer, SumReducer
from tests.reducers.reducer_helpers import LABELS, assert_matches_pml, embeddings, loss_dict, losses

# Anchor 0 has pairs with losses 1 and 0, anchor 2 one pair (3), anchor 4 three pairs (0, 0, 6);
# anchors 1, 3 and 5 have none.
ANCHORS = torch.tensor([0, 0, 2, 4, 4, 4])
OTHERS = torch.tensor([1, 3, 3, 0, 1, 2])
VALUES = [1.0, 0.0, 3.0, 0.0, 0.0, 6.0]
# Zero-valued pairs count in each anchor's mean; anchors without pairs give 0 and are kept.
PER_ANCHOR = [0.5, 0.0, 3.0, 0.0, 2.0, 0.0]


def reduce(reducer, reduction_type="pos_pair", values=VALUES):
    loss_tensor = losses(values)
    reduced = reducer(
        loss_dict(loss_tensor, reduction_type, indices=(ANCHORS, OTHERS)), embeddings(), LABELS
    )
    return reduced, loss_tensor


@pytest.mark.parametrize("reduction_type", ["pos_pair", "neg_pair"])
def test_mean_per_anchor_then_mean_over_all_anchors_by_hand(reduction_type):
    reduced, loss_tensor = reduce(PerAnchorReducer(), reduction_type)
    assert reduced.item() == pytest.approx(sum(PER_ANCHOR) / 6)
    (grad,) = torch.autograd.grad(reduced, loss_tensor)
    pairs_per_anchor = torch.tensor([2, 2, 1, 3, 3, 3])
    torch.testing.assert_close(grad, 1 / (6 * pairs_per_anchor.float()))


def test_per_anchor_values_go_to_the_inner_reducer_as_element_losses():
    per_anchor, _ = reduce(PerAnchorReducer(reducer=DoNothingReducer()))
    torch.testing.assert_close(per_anchor["loss"]["losses"].detach(), torch.tensor(PER_ANCHOR))
    torch.testing.assert_close(per_anchor["loss"]["indices"], torch.arange(6))
    assert per_anchor["loss"]["reduction_type"] == "element"
    assert reduce(PerAnchorReducer(reducer=SumReducer()))[0].item() == pytest.approx(5.5)
    assert reduce(PerAnchorReducer(reducer=AvgNonZeroReducer()))[0].item() == pytest.approx(5.5 / 3)


def test_a_repeated_pair_counts_once():
    anchors, others = torch.tensor([0, 0, 0]), torch.tensor([1, 1, 2])
    loss_tensor = torch.tensor([2.0, 2.0, 5.0])
    reducer = PerAnchorReducer(reducer=DoNothingReducer())
    per_anchor = reducer(
        loss_dict(loss_tensor, "pos_pair", indices=(anchors, others)), embeddings(), LABELS
    )
    assert per_anchor["loss"]["losses"][0].item() == pytest.approx(3.5)


def test_custom_aggregation_gets_the_pair_matrix_and_counts():
    seen = {}

    def row_max(x, num_per_row):
        seen["x"], seen["num_per_row"] = x.detach(), num_per_row
        return x.max(dim=1).values

    reduced, _ = reduce(PerAnchorReducer(aggregation_func=row_max))
    assert reduced.item() == pytest.approx((1 + 3 + 6) / 6)
    assert seen["x"].shape == (6, 6) and seen["x"][4, 2] == 6
    assert seen["num_per_row"].tolist() == [2, 0, 1, 0, 3, 0]


def test_element_losses_go_to_the_inner_reducer_unchanged():
    loss_tensor = losses(VALUES)
    reduced = PerAnchorReducer()(
        loss_dict(loss_tensor, "element", indices=ANCHORS), embeddings(), LABELS
    )
    assert reduced.item() == pytest.approx(sum(VALUES) / 6)


def test_triplets_are_rejected():
    triplets = (ANCHORS, OTHERS, OTHERS)
    with pytest.raises(ValueError, match="not triplet losses"):
        PerAnchorReducer()(
            loss_dict(losses(VALUES), "triplet", indices=triplets), embeddings(), LABELS
        )


def test_empty_pairs_give_zero_with_backward():
    empty = torch.zeros(0, dtype=torch.long)
    emb = embeddings()
    reduced = PerAnchorReducer()(
        loss_dict(torch.zeros(0), "pos_pair", indices=(empty, empty)), emb, LABELS
    )
    assert reduced.item() == 0
    reduced.backward()


def row_max(x, num_per_row):
    return x.max(dim=1).values


@pytest.mark.parametrize("reduction_type", ["pos_pair", "neg_pair", "element"])
@pytest.mark.parametrize(
    "inner, aggregation", [(None, None), ("SumReducer", None), ("AvgNonZeroReducer", row_max)]
)
def test_matches_pml(pml_reducers, dtype, reduction_type, inner, aggregation):
    from metric_runner import reducers

    kwargs = {} if aggregation is None else {"aggregation_func": aggregation}
    ours = PerAnchorReducer(reducer=inner and getattr(reducers, inner)(), **kwargs)
    theirs = pml_reducers.PerAnchorReducer(
        reducer=inner and getattr(pml_reducers, inner)(), **kwargs
    )
    indices = ANCHORS if reduction_type == "element" else (ANCHORS, OTHERS)
    assert_matches_pml(ours, theirs, reduction_type, dtype, values=VALUES, indices=indices)
