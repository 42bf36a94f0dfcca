"""TwoStreamMetricLoss: anchors from one stream, positives/negatives from the other; matches
PML's TwoStreamMetricLoss step for step (float64), with and without a miner."""

import pytest
import torch

from metric_runner import miners
from metric_runner.trainers import TwoStreamMetricLoss
from metric_runner.utils import loss_and_miner_utils as lmu
from tests.trainers.helpers import assert_same_run, blobs, build, run_recorded, train


def two_stream_blobs():
    x, labels = blobs().tensors
    generator = torch.Generator().manual_seed(1)
    return torch.utils.data.TensorDataset(
        x, x + 0.3 * torch.randn(x.shape, generator=generator, dtype=x.dtype), labels
    )


SETUPS = {
    "all_triplets": dict(mining_funcs={}),
    "triplet_miner": dict(mining_funcs={"tuple_miner": miners.TripletMarginMiner(margin=0.5)}),
}


@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
def test_matches_pml_two_stream_metric_loss(pml_trainers, setup):
    theirs = run_recorded(pml_trainers.TwoStreamMetricLoss, dataset=two_stream_blobs(), **setup)
    ours = run_recorded(TwoStreamMetricLoss, dataset=two_stream_blobs(), **setup)
    assert_same_run(ours, theirs)


def test_triplets_anchor_in_one_stream_and_compare_with_the_other():
    seen = []

    class Loss(torch.nn.Module):
        def forward(self, embeddings, labels, indices_tuple):
            seen.append((embeddings.shape, labels.clone(), indices_tuple))
            return embeddings.pow(2).mean()

    trainer = build(
        TwoStreamMetricLoss,
        dataset=two_stream_blobs(),
        loss=Loss(),
        miner=False,
        iterations_per_epoch=1,
    )
    train(trainer, num_epochs=1)
    ((shape, labels, (anchor, positive, negative)),) = seen
    assert shape == (32, 4) and torch.equal(labels[:16], labels[16:])
    assert anchor.max() < 16 and positive.min() >= 16 and negative.min() >= 16
    expected = lmu.get_all_triplets_indices(labels[:16], labels[16:])
    assert torch.equal(positive - 16, expected[1]) and torch.equal(anchor, expected[0])
    assert (positive - 16 == anchor).any()  # an anchor's own positive is a positive
    assert (labels[anchor] == labels[positive]).all() and (labels[anchor] != labels[negative]).all()


def test_only_tuple_miners_are_accepted():
    with pytest.raises(AssertionError, match="mining_funcs keys must be one of tuple_miner"):
        build(
            TwoStreamMetricLoss,
            dataset=two_stream_blobs(),
            mining_funcs={"subset_batch_miner": miners.TripletMarginMiner()},
        )
