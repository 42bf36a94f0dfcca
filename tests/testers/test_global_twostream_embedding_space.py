import numpy as np
import pytest
import torch

from metric_runner.testers import GlobalTwoStreamEmbeddingSpaceTester
from metric_runner.utils.accuracy_calculator import AccuracyCalculator
from tests.testers.helpers import embed, models


class TwoStreamDataset(torch.utils.data.Dataset):
    """(anchor, positive, label): the positive is a noisy copy of the anchor."""

    def __init__(self, n=30, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(5).repeat(n // 5)
        self.anchors = torch.randn(n, 6, generator=generator) + self.labels.unsqueeze(1).float()
        self.positives = self.anchors + 0.3 * torch.randn(n, 6, generator=generator)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.anchors[i], self.positives[i], self.labels[i]


def make_tester(**kwargs):
    return GlobalTwoStreamEmbeddingSpaceTester(
        dataloader_num_workers=0,
        data_device="cpu",
        accuracy_calculator=AccuracyCalculator(exclude=("NMI", "AMI"), device="cpu"),
        **kwargs,
    )


def test_anchors_are_queried_against_positives():
    trunk, embedder = models()
    dataset = TwoStreamDataset()
    result = make_tester().test({"val": dataset}, 2, trunk, embedder)["val"]
    expected = AccuracyCalculator(exclude=("NMI", "AMI"), device="cpu").get_accuracy(
        embed(dataset.anchors, trunk, embedder),
        dataset.labels,
        embed(dataset.positives, trunk, embedder),
        dataset.labels,
    )
    assert result == {"epoch": 2, **{f"{m}_level0": v for m, v in expected.items()}}


def test_agrees_with_pml(pml):
    pytest.importorskip("faiss")
    from pytorch_metric_learning.testers import GlobalTwoStreamEmbeddingSpaceTester as PMLTester
    from pytorch_metric_learning.utils.accuracy_calculator import (
        AccuracyCalculator as PMLCalculator,
    )

    trunk, embedder = models()
    splits = {"train": TwoStreamDataset(seed=1), "val": TwoStreamDataset(seed=2)}
    expected = PMLTester(
        dataloader_num_workers=0, data_device="cpu", accuracy_calculator=PMLCalculator(k=4)
    ).test(splits, 0, trunk, embedder)
    ours = GlobalTwoStreamEmbeddingSpaceTester(
        dataloader_num_workers=0, data_device="cpu", accuracy_calculator=AccuracyCalculator(k=4)
    ).test(splits, 0, trunk, embedder)
    for split in expected:
        assert set(ours[split]) == set(expected[split])
        for key, value in expected[split].items():
            np.testing.assert_allclose(ours[split][key], value, rtol=1e-6, atol=1e-6, err_msg=key)


def test_only_a_split_against_itself():
    trunk, embedder = models()
    splits = {"a": TwoStreamDataset(), "b": TwoStreamDataset(seed=1)}
    with pytest.raises(ValueError, match=r"must look like \(split, \[split\]\)"):
        make_tester().test(splits, 0, trunk, embedder, splits_to_eval=[("a", ["b"])])


def test_compute_all_embeddings_matches_pml_raw_and_without_changing_modes(pml):
    settings = dict(dataloader_num_workers=0, data_device="cpu", pca=2)
    results = {}
    for name, tester in [
        ("ours", GlobalTwoStreamEmbeddingSpaceTester(**settings)),
        ("pml", pml.testers.GlobalTwoStreamEmbeddingSpaceTester(**settings)),
    ]:
        trunk, embedder = models()
        loader = torch.utils.data.DataLoader(TwoStreamDataset(n=20), batch_size=6)
        results[name] = tester.compute_all_embeddings(loader, trunk, embedder)
        assert trunk.training and embedder.training  # modes untouched
    (anchors, positives, labels), (their_anchors, their_positives, their_labels) = (
        results["ours"],
        results["pml"],
    )
    assert anchors.shape == positives.shape == (20, 3)  # raw: no pca, no normalization
    torch.testing.assert_close(anchors, their_anchors)
    torch.testing.assert_close(positives, their_positives)
    # PML returns the labels as float; ours keep the dataset's integer labels.
    assert labels.dtype == torch.int64 and torch.equal(labels.float(), their_labels)


def test_get_all_embeddings_leaves_the_models_in_eval_mode():
    trunk, embedder = models()
    make_tester().get_all_embeddings(TwoStreamDataset(n=10), trunk, embedder)
    assert not trunk.training and not embedder.training
