import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from metric_runner.runner.batches import FlattenedBatches, SameClassPartners, trainer_dataset
from metric_runner.runner.components import RunError


def test_whole_batches_are_the_batches_of_item_by_item_loading():
    data = TensorDataset(torch.randn(10, 3), torch.arange(10) % 3)
    sampler = [7, 1, 4, 4, 9, 0]
    dataset, collate_fn = trainer_dataset(data)
    fast = list(DataLoader(dataset, batch_size=3, sampler=sampler, collate_fn=collate_fn))
    plain = list(DataLoader(data, batch_size=3, sampler=sampler))
    for (x, y), (x_plain, y_plain) in zip(fast, plain):
        torch.testing.assert_close(x, x_plain, rtol=0, atol=0)
        torch.testing.assert_close(y, y_plain, rtol=0, atol=0)


def test_partners_are_other_samples_of_the_same_class_fixed_by_the_seed():
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 0, 7])
    data = TensorDataset(torch.arange(8.0).unsqueeze(1), labels)
    pairs = SameClassPartners(data, seed=3)
    partners = pairs.partners
    assert torch.equal(labels[partners], labels)
    alone = torch.tensor([3, 7])  # classes of one pair with themselves
    assert torch.equal(partners[alone], alone)
    others = torch.tensor([0, 1, 2, 4, 5, 6])
    assert (partners[others] != others).all()
    anchors, others, batch_labels = pairs.__getitems__([0, 3, 5])
    inputs = data.tensors[0]
    torch.testing.assert_close(anchors, inputs[[0, 3, 5]], rtol=0, atol=0)
    torch.testing.assert_close(others, inputs[partners[[0, 3, 5]]], rtol=0, atol=0)
    assert torch.equal(batch_labels, labels[[0, 3, 5]])
    assert torch.equal(SameClassPartners(data, seed=3).partners, partners)
    draws = {tuple(SameClassPartners(data, seed=s).partners.tolist()) for s in range(20)}
    assert len(draws) > 1  # other seeds, other partners


def test_flattened_batches_keep_each_batch_a_consecutive_block():
    flat = FlattenedBatches([[4, 1, 2], [0, 3, 5]], batch_size=3)
    assert (len(flat), list(flat)) == (6, [4, 1, 2, 0, 3, 5])
    with pytest.raises(RunError, match="a batch of 2 samples, not batch_size=3"):
        list(FlattenedBatches([[4, 1, 2], [0, 3]], batch_size=3))
