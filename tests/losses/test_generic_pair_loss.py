"""GenericPairLoss: what a subclass receives for all pairs and for a miner's tuples."""

import pytest
import torch

from metric_runner.distances import LpDistance
from metric_runner.losses import GenericPairLoss
from metric_runner.reducers import DoNothingReducer

# Four points on a line: classes 0, 0, 1, 1.
EMBEDDINGS = torch.tensor([[0.0], [1.0], [3.0], [7.0]], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 1, 1])


class PairSums(GenericPairLoss):
    """Per-pair losses: the distance of each positive pair, minus that of each negative."""

    def __init__(self, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)

    def _compute_loss(self, pos_pair_dist, neg_pair_dist, indices_tuple):
        return {
            "pos": {
                "losses": pos_pair_dist,
                "indices": indices_tuple[:2],
                "reduction_type": "pos_pair",
            },
            "neg": {
                "losses": -neg_pair_dist,
                "indices": indices_tuple[2:],
                "reduction_type": "neg_pair",
            },
        }

    def _sub_loss_names(self):
        return ["pos", "neg"]


class MaskSums(GenericPairLoss):
    def __init__(self, **kwargs):
        super().__init__(mat_based_loss=True, **kwargs)

    def _compute_loss(self, mat, pos_mask, neg_mask):
        value = (mat * pos_mask).sum() - (mat * neg_mask).sum()
        return {"loss": {"losses": value, "indices": None, "reduction_type": "already_reduced"}}


def raw_distance():
    return LpDistance(normalize_embeddings=False)


def test_all_pairs_reach_the_subclass_without_self_pairs():
    losses = PairSums(distance=raw_distance(), reducer=DoNothingReducer())(EMBEDDINGS, LABELS)
    # Positive pairs (0,1), (1,0), (2,3), (3,2); negatives every cross-class pair.
    assert losses["pos"]["losses"].tolist() == [1.0, 1.0, 4.0, 4.0]
    assert [x.tolist() for x in losses["pos"]["indices"]] == [[0, 1, 2, 3], [1, 0, 3, 2]]
    assert losses["neg"]["losses"].tolist() == [-3.0, -7.0, -2.0, -6.0, -3.0, -2.0, -7.0, -6.0]


def test_mat_based_subclass_gets_masks_and_miner_tuples_become_pairs():
    loss = MaskSums(distance=raw_distance())
    # All pairs: positives sum to 10, negatives to 36.
    assert loss(EMBEDDINGS, LABELS).item() == pytest.approx(10 - 36)
    # One triplet (0, 1, 3): the pair (0, 1) and the pair (0, 3).
    triplet = (torch.tensor([0]), torch.tensor([1]), torch.tensor([3]))
    assert loss(EMBEDDINGS, LABELS, triplet).item() == pytest.approx(1 - 7)


def test_a_subclass_without_its_loss_is_refused_when_defined():
    with pytest.raises(TypeError, match="must define _compute_loss"):

        class Incomplete(GenericPairLoss):
            pass
