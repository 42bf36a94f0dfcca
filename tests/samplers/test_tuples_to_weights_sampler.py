import pytest
import torch
from torch.utils.data import TensorDataset

from metric_runner.miners import PairMarginMiner
from metric_runner.samplers import TuplesToWeightsSampler


class FixedPairsMiner(torch.nn.Module):
    """Mines the same pairs (positions in the subset) every time and remembers its inputs.
    Subset position 0 appears 3 times, 1 twice, 2 once: weights 1, 2/3, 1/3."""

    pairs = (torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([0]), torch.tensor([1]))

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, embeddings, labels):
        self.calls.append((embeddings.clone(), labels.clone()))
        return self.pairs


def index_dataset(num_samples=12):
    """Inputs are the sample indices, so an identity model's embeddings reveal the subset."""
    inputs = torch.arange(num_samples, dtype=torch.float32).unsqueeze(1)
    return TensorDataset(inputs, torch.arange(num_samples) % 3)


def identity_model():
    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.zero_()
    return model.train()


def test_weights_count_tuple_appearances_of_the_subset():
    data, model, miner = index_dataset(), identity_model(), FixedPairsMiner()
    torch.manual_seed(0)
    sampler = TuplesToWeightsSampler(model, miner, data, subset_size=5, batch_size=2)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 5
    embeddings, labels = miner.calls[0]
    subset = embeddings.flatten().round().long()
    assert len(set(subset.tolist())) == 5
    expected = torch.zeros(12)
    expected[subset[:3]] = torch.tensor([1.0, 2 / 3, 1 / 3])
    torch.testing.assert_close(sampler.weights, expected)
    assert set(indices) <= set(subset[:3].tolist())
    torch.testing.assert_close(labels, data.tensors[1][subset])
    assert model.training and not embeddings.requires_grad


def test_draws_follow_the_weights_with_a_new_subset_each_epoch():
    data, miner = index_dataset(), FixedPairsMiner()
    torch.manual_seed(0)
    sampler = TuplesToWeightsSampler(identity_model(), miner, data, subset_size=6)
    draws_by_subset_position = torch.zeros(3)
    subsets = set()
    for epoch in range(150):
        indices = torch.tensor(list(sampler))
        subset = miner.calls[epoch][0].flatten().round().long()
        subsets.add(tuple(subset.tolist()))
        for position in range(3):
            draws_by_subset_position[position] += (indices == subset[position]).sum()
    assert len(subsets) > 100
    # weights 1, 2/3, 1/3 -> probabilities 1/2, 1/3, 1/6
    frequencies = draws_by_subset_position / draws_by_subset_position.sum()
    torch.testing.assert_close(frequencies, torch.tensor([1 / 2, 1 / 3, 1 / 6]), atol=0.03, rtol=0)


def test_with_a_real_miner_every_sampled_index_was_mined():
    data = TensorDataset(torch.randn(30, 4), torch.arange(30) % 3)
    torch.manual_seed(0)
    miner = PairMarginMiner(pos_margin=0.5, neg_margin=0.5)
    sampler = TuplesToWeightsSampler(torch.nn.Linear(4, 3), miner, data, subset_size=20)
    indices = list(sampler)
    assert len(indices) == 20
    assert (sampler.weights[indices] > 0).all()
    assert (sampler.weights > 0).sum() <= 20


def test_same_length_as_pml(pml):
    from pytorch_metric_learning.samplers import TuplesToWeightsSampler as PMLTuplesToWeightsSampler

    data, model, miner = index_dataset(), identity_model(), PairMarginMiner()
    assert (
        len(TuplesToWeightsSampler(model, miner, data))
        == len(PMLTuplesToWeightsSampler(model, miner, data))
        == 12
    )
    assert len(TuplesToWeightsSampler(model, miner, data, 7)) == len(
        PMLTuplesToWeightsSampler(model, miner, data, 7)
    )


def test_bad_arguments_raise_a_clear_error():
    data, model, miner = index_dataset(), identity_model(), PairMarginMiner()
    with pytest.raises(ValueError, match="subset_size"):
        TuplesToWeightsSampler(model, miner, data, subset_size=13)
    with pytest.raises(TypeError, match="unsupported arguments \\['normalize_embeddings'\\]"):
        TuplesToWeightsSampler(model, miner, data, normalize_embeddings=True)
