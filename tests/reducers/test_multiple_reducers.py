import pytest
import torch

from metric_runner.reducers import AvgNonZeroReducer, MeanReducer, MultipleReducers, SumReducer
from tests.reducers.reducer_helpers import LABELS, embeddings, loss_dict, losses


def two_sub_losses(
    values_a=(0.0, 1.0, 2.0, 3.0, 0.5, 4.0), values_b=(0.0, 2.0, 0.0, 4.0, 0.0, 0.0)
):
    a, b = losses(list(values_a)), losses(list(values_b))
    return (
        a,
        b,
        {**loss_dict(a, "pos_pair", name="pos_loss"), **loss_dict(b, "neg_pair", name="neg_loss")},
    )


def test_each_sub_loss_gets_its_reducer_and_results_are_summed():
    a, b, sub_losses = two_sub_losses()
    reducer = MultipleReducers({"pos_loss": SumReducer(), "neg_loss": AvgNonZeroReducer()})
    reduced = reducer(sub_losses, embeddings(), LABELS)
    assert reduced.item() == pytest.approx(10.5 + 6 / 2)
    grad_a, grad_b = torch.autograd.grad(reduced, [a, b])
    torch.testing.assert_close(grad_a, torch.ones(6))
    torch.testing.assert_close(grad_b, torch.tensor([0, 0.5, 0, 0.5, 0, 0]))


def test_unnamed_sub_losses_use_the_default_reducer():
    _, _, sub_losses = two_sub_losses()
    only_pos = MultipleReducers({"pos_loss": SumReducer()})
    assert only_pos(sub_losses, embeddings(), LABELS).item() == pytest.approx(10.5 + 6 / 6)
    summing_default = MultipleReducers({"pos_loss": MeanReducer()}, default_reducer=SumReducer())
    assert summing_default(sub_losses, embeddings(), LABELS).item() == pytest.approx(10.5 / 6 + 6)


def test_empty_loss_dict_gives_zero_with_backward():
    emb = embeddings()
    reduced = MultipleReducers({"loss": MeanReducer()})({}, emb, LABELS)
    assert reduced.item() == 0
    reduced.backward()


def test_reset_stats_reaches_every_sub_reducer():
    sub_reducer = AvgNonZeroReducer(collect_stats=True)
    reducer = MultipleReducers({"neg_loss": sub_reducer}, collect_stats=True)
    _, _, sub_losses = two_sub_losses()
    reducer(sub_losses, embeddings(), LABELS)
    assert sub_reducer.num_past_filter == 2
    reducer.reset_stats()
    assert sub_reducer.num_past_filter == 0


def test_matches_pml(pml_reducers):
    _, _, sub_losses = two_sub_losses()
    ours = MultipleReducers({"pos_loss": SumReducer()}, default_reducer=AvgNonZeroReducer())
    theirs = pml_reducers.MultipleReducers(
        {"pos_loss": pml_reducers.SumReducer()}, default_reducer=pml_reducers.AvgNonZeroReducer()
    )
    torch.testing.assert_close(
        ours(sub_losses, embeddings(), LABELS), theirs(sub_losses, embeddings(), LABELS)
    )
