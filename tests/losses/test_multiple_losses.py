import importlib

import pytest
import torch

from metric_runner.losses import (
    ContrastiveLoss,
    IntraPairVarianceLoss,
    MultipleLosses,
    TripletMarginLoss,
)
from metric_runner.miners import MultiSimilarityMiner
from tests.helpers import assert_close
from tests.losses import tuple_loss_helpers as h


def test_weighted_sum_of_a_list():
    embeddings, labels = h.data()
    a, b = ContrastiveLoss(neg_margin=0.9), TripletMarginLoss(margin=0.3)
    expected = 0.5 * a(embeddings, labels) + 2.0 * b(embeddings, labels)
    assert_close(
        MultipleLosses([a, b], weights=[0.5, 2.0])(embeddings, labels), expected, torch.float64
    )


def test_dict_with_a_miner_for_one_loss():
    embeddings, labels = h.data()
    a, b, miner = (
        ContrastiveLoss(neg_margin=0.9),
        TripletMarginLoss(margin=0.3),
        MultiSimilarityMiner(),
    )
    expected = 3.0 * a(embeddings, labels) + b(embeddings, labels, miner(embeddings, labels))
    combined = MultipleLosses(
        {"pairs": a, "triplets": b},
        miners={"triplets": miner},
        weights={"pairs": 3.0, "triplets": 1},
    )
    assert_close(combined(embeddings, labels), expected, torch.float64)


def test_indices_tuple_goes_to_every_loss():
    embeddings, labels = h.data()
    triplets = h.mined_triplets(labels)
    a, b = ContrastiveLoss(), IntraPairVarianceLoss()
    expected = a(embeddings, labels, triplets) + b(embeddings, labels, triplets)
    assert_close(MultipleLosses([a, b])(embeddings, labels, triplets), expected, torch.float64)


@pytest.mark.parametrize("as_dict", [False, True])
def test_matches_pml(pml, dtype, as_dict):
    embeddings, labels = h.data(dtype)
    results = []
    for root in ("metric_runner", "pytorch_metric_learning"):
        lib = h.library(root)
        miner = importlib.import_module(f"{root}.miners").MultiSimilarityMiner(0.3)
        losses = [lib.losses.TupletMarginLoss(scale=16), lib.losses.IntraPairVarianceLoss(0.1, 0.1)]
        miners = [miner, None]
        weights = [1.0, 0.5]
        if as_dict:
            losses, miners, weights = (
                {k: v for k, v in zip("ab", x)} for x in (losses, miners, weights)
            )
            miners = {"a": miners["a"]}
        x = embeddings.detach().clone().requires_grad_(True)
        value = lib.losses.MultipleLosses(losses, miners=miners, weights=weights)(x, labels)
        results.append((value, *torch.autograd.grad(value, [x])))
    for ours, theirs in zip(*results):
        assert_close(ours, theirs, dtype, scale=10)


def test_losses_and_miners_are_submodules():
    combined = MultipleLosses({"a": ContrastiveLoss()}, miners={"a": MultiSimilarityMiner()})
    assert isinstance(combined.losses["a"], ContrastiveLoss) and isinstance(
        combined.miners["a"], MultiSimilarityMiner
    )
    assert MultipleLosses([ContrastiveLoss()]).weights == [1]


def test_rejects_mismatched_arguments():
    a, b = ContrastiveLoss(), TripletMarginLoss()
    with pytest.raises(ValueError, match="one entry per loss"):
        MultipleLosses([a, b], miners=[None])
    with pytest.raises(TypeError, match="must be a dict"):
        MultipleLosses([a, b], weights={"x": 1})
    with pytest.raises(ValueError, match="missing"):
        MultipleLosses({"x": a, "y": b}, weights={"x": 2})
    with pytest.raises(ValueError, match="unknown"):
        MultipleLosses({"x": a}, miners={"z": MultiSimilarityMiner()})
    with pytest.raises(TypeError, match="non-empty"):
        MultipleLosses([])
    embeddings, labels = h.data()
    with pytest.raises(ValueError, match="not both"):
        MultipleLosses([a], miners=[MultiSimilarityMiner()])(
            embeddings, labels, h.mined_pairs(labels)
        )
