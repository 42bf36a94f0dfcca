"""The shared behaviour of every loss: regularizer sub-losses, one reducer per sub-loss,
unreduced output, empty batches, input checks, and what GenericPairLoss hands its
subclasses."""

import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.losses import (
    ArcFaceLoss,
    BaseMetricLossFunction,
    ContrastiveLoss,
    GenericPairLoss,
    MultiSimilarityLoss,
    TripletMarginLoss,
    WeightMixin,
)
from metric_runner.reducers import (
    AvgNonZeroReducer,
    DoNothingReducer,
    MeanReducer,
    MultipleReducers,
    SumReducer,
)
from metric_runner.regularizers import LpRegularizer
from tests.losses import tuple_loss_helpers as h


class SumOfRows(BaseMetricLossFunction):
    """A minimal loss: one element loss per row, its sum."""

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        self.seen = {"labels": labels, "indices_tuple": indices_tuple}
        return {
            "loss": {
                "losses": embeddings.sum(dim=1),
                "indices": torch.arange(len(embeddings), device=embeddings.device),
                "reduction_type": "element",
            }
        }


class RecordingPairLoss(GenericPairLoss):
    """Keeps what GenericPairLoss passes to `_compute_loss`."""

    def _compute_loss(self, *args):
        self.received = args
        return {"loss": self.zero_loss()}


def test_embedding_regularizer_adds_its_weighted_sub_loss():
    embeddings, labels = h.data()
    plain = TripletMarginLoss(margin=0.3)(embeddings, labels)
    loss_fn = TripletMarginLoss(
        margin=0.3, embedding_regularizer=LpRegularizer(), embedding_reg_weight=0.25
    )
    assert loss_fn.sub_loss_names() == ["loss", "embedding_reg_loss"]
    mean_norm = torch.linalg.vector_norm(embeddings, dim=1).mean()
    torch.testing.assert_close(loss_fn(embeddings, labels), plain + 0.25 * mean_norm)


def test_regularization_loss_entries_and_names_as_pml_exposes_them():
    embeddings = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    loss_fn = ContrastiveLoss(embedding_regularizer=LpRegularizer(), embedding_reg_weight=0.5)
    assert loss_fn.all_regularization_loss_names() == ["embedding_reg_loss"]
    entry = loss_fn.embedding_regularization_loss(embeddings)
    assert entry["reduction_type"] == "already_reduced" and entry["indices"] is None
    assert entry["losses"].item() == pytest.approx(0.5 * (5 + 1) / 2)
    assert ContrastiveLoss().embedding_regularization_loss(embeddings)["losses"] == 0
    assert ContrastiveLoss().all_regularization_loss_names() == []
    arcface = ArcFaceLoss(3, 2, weight_regularizer=LpRegularizer(), weight_reg_weight=2)
    assert arcface.all_regularization_loss_names() == ["weight_reg_loss"]
    assert arcface.weight_regularization_loss(embeddings)["losses"].item() == pytest.approx(6)
    assert isinstance(arcface, WeightMixin)


def test_do_nothing_reducer_returns_the_loss_dict_with_the_regularizer():
    embeddings, labels = h.data()
    loss_fn = ContrastiveLoss(
        embedding_regularizer=LpRegularizer(), embedding_reg_weight=2, reducer=DoNothingReducer()
    )
    out = loss_fn(embeddings, labels)
    assert set(out) == {"pos_loss", "neg_loss", "embedding_reg_loss"}
    assert out["embedding_reg_loss"]["reduction_type"] == "already_reduced"
    expected = 2 * torch.linalg.vector_norm(embeddings, dim=1).mean()
    torch.testing.assert_close(out["embedding_reg_loss"]["losses"], expected)


def test_a_single_reducer_is_copied_to_each_sub_loss():
    reducer = MeanReducer()
    loss_fn = ContrastiveLoss(reducer=reducer)
    assert isinstance(loss_fn.reducer, MultipleReducers)
    copies = loss_fn.reducer.reducers
    assert set(copies) == {"pos_loss", "neg_loss"}
    assert all(isinstance(r, MeanReducer) and r is not reducer for r in copies.values())
    assert copies["pos_loss"] is not copies["neg_loss"]


def test_multiple_reducers_reduce_each_sub_loss_their_own_way():
    embeddings, labels = h.data()
    reducer = MultipleReducers({"pos_loss": SumReducer(), "neg_loss": AvgNonZeroReducer()})
    loss_fn = ContrastiveLoss(pos_margin=0.1, neg_margin=0.9, reducer=reducer)
    assert loss_fn.reducer is reducer
    out = ContrastiveLoss(pos_margin=0.1, neg_margin=0.9, reducer=DoNothingReducer())(
        embeddings, labels
    )
    neg = out["neg_loss"]["losses"]
    expected = out["pos_loss"]["losses"].sum() + neg[neg > 0].mean()
    torch.testing.assert_close(loss_fn(embeddings, labels), expected)


@pytest.mark.parametrize(
    "loss_fn", [TripletMarginLoss(), ContrastiveLoss(), MultiSimilarityLoss()], ids=type
)
def test_zero_loss_and_working_backward_without_valid_tuples(loss_fn):
    embeddings, _ = h.tiny_batch()
    h.assert_zero_loss_with_gradient(loss_fn, embeddings[:1], torch.tensor([0]))
    no_pairs = tuple(torch.empty(0, dtype=torch.long) for _ in range(4))
    h.assert_zero_loss_with_gradient(loss_fn, embeddings, torch.arange(5), no_pairs)


def test_labels_and_indices_are_moved_to_the_embeddings_device(device):
    embeddings = torch.randn(4, 3, device=device)
    loss_fn = SumOfRows()
    indices = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    loss_fn(embeddings, torch.tensor([0, 0, 1, 1]), indices)
    assert loss_fn.seen["labels"].device == embeddings.device
    assert all(x.device == embeddings.device for x in loss_fn.seen["indices_tuple"])


def test_labels_are_optional_when_indices_are_given():
    embeddings, labels = h.tiny_batch()
    triplets = (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([4, 0]))
    with_labels = TripletMarginLoss(margin=0.5)(embeddings, labels, triplets)
    torch.testing.assert_close(
        TripletMarginLoss(margin=0.5)(embeddings, None, triplets), with_labels
    )


def test_bad_input_is_rejected_with_a_clear_message():
    embeddings, labels = h.tiny_batch()
    loss_fn = TripletMarginLoss()
    with pytest.raises(ValueError, match="must equal number of labels"):
        loss_fn(embeddings, labels[:4])
    # The built-in distances take 2-D rows (a custom distance may take others).
    with pytest.raises(ValueError, match="must be 2D"):
        loss_fn(embeddings.unsqueeze(1), labels)
    with pytest.raises(ValueError, match="labels must be 1D"):
        loss_fn(embeddings, labels.unsqueeze(1))
    with pytest.raises(ValueError, match="cannot both be None"):
        loss_fn(embeddings)
    with pytest.raises(ValueError, match="ref_labels must be given"):
        loss_fn(embeddings, labels, ref_emb=embeddings)
    with pytest.raises(ValueError, match="both must come from the same embedder"):
        loss_fn(embeddings, labels, ref_emb=torch.randn(3, 4), ref_labels=labels[:3])


def test_generic_pair_loss_hands_masks_to_matrix_based_losses():
    embeddings, labels = h.tiny_batch()
    loss_fn = RecordingPairLoss(mat_based_loss=True, distance=CosineSimilarity())
    loss_fn(embeddings, labels)
    mat, pos_mask, neg_mask = loss_fn.received
    torch.testing.assert_close(mat, embeddings @ embeddings.t())
    pairs = h.tiny_pairs(labels.tolist())
    assert sorted(zip(*torch.where(pos_mask))) == [(i, j) for i, j, s in pairs if s]
    assert sorted(zip(*torch.where(neg_mask))) == [(i, j) for i, j, s in pairs if not s]
    # Mined triplets: masks of their pairs, repeats collapsed.
    triplets = (torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([4, 4]))
    loss_fn(embeddings, labels, triplets)
    _, pos_mask, neg_mask = loss_fn.received
    assert torch.where(pos_mask) == (torch.tensor([0]), torch.tensor([1]))
    assert torch.where(neg_mask) == (torch.tensor([0]), torch.tensor([4]))


def test_generic_pair_loss_hands_pair_distances_to_pair_based_losses():
    embeddings, labels = h.tiny_batch()
    ref_emb, ref_labels = embeddings[:3] * 2, torch.tensor([0, 1, 2])
    loss_fn = RecordingPairLoss(mat_based_loss=False, distance=CosineSimilarity())
    loss_fn(embeddings, labels, ref_emb=ref_emb, ref_labels=ref_labels)
    pos_dist, neg_dist, (a1, p, a2, n) = loss_fn.received
    # A reference set is never the batch itself: (0, 0) is a positive pair here.
    assert list(zip(a1.tolist(), p.tolist())) == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)]
    sim = embeddings @ (ref_emb / 2).t()
    torch.testing.assert_close(pos_dist, sim[a1, p])
    torch.testing.assert_close(neg_dist, sim[a2, n])
    assert len(a2) == 5 * 3 - 5
