import pytest
import torch

from metric_runner.miners import BaseMiner, PairMarginMiner, TripletMarginMiner
from tests.miners.helpers import clustered_batch


def test_output_sizes_are_recorded_without_collect_stats():
    embeddings, labels = clustered_batch()
    triplet_miner = TripletMarginMiner(margin=0.5, collect_stats=False)
    a, _, _ = triplet_miner(embeddings, labels)
    assert triplet_miner.num_triplets == len(a) > 0
    pair_miner = PairMarginMiner(collect_stats=False)
    a1, _, a2, _ = pair_miner(embeddings, labels)
    assert (pair_miner.num_pos_pairs, pair_miner.num_neg_pairs) == (len(a1), len(a2))


class ReturnsThis(BaseMiner):
    def __init__(self, output):
        super().__init__()
        self.output = output

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        return self.output


def test_a_custom_miner_returning_a_malformed_tuple_is_named():
    embeddings, labels = clustered_batch()
    with pytest.raises(
        TypeError, match="ReturnsThis.mine's output must be a pair 4-tuple.*got 2 tensors"
    ):
        ReturnsThis((torch.arange(2), torch.arange(2)))(embeddings, labels)
    uneven = (torch.arange(2), torch.arange(3), torch.arange(2))
    with pytest.raises(AssertionError, match=r"lengths \[2, 3, 2\]"):
        ReturnsThis(uneven)(embeddings, labels)
