import numpy as np
import pytest
import torch

from metric_runner.testers import WithSameParentLabelTester
from metric_runner.utils.accuracy_calculator import AccuracyCalculator
from tests.testers.helpers import embed, models, one_level_dataset, two_level_dataset

KNN_ONLY = {"exclude": ("NMI", "AMI")}


def make_tester(**kwargs):
    kwargs.setdefault("accuracy_calculator", AccuracyCalculator(**KNN_ONLY, device="cpu"))
    return WithSameParentLabelTester(dataloader_num_workers=0, data_device="cpu", **kwargs)


def test_queries_search_only_their_siblings():
    trunk, embedder = models()
    dataset = two_level_dataset()
    result = make_tester().test({"val": dataset}, 1, trunk, embedder)["val"]
    x, labels = dataset.tensors
    embeddings = embed(x, trunk, embedder)
    calculator = AccuracyCalculator(**KNN_ONLY, device="cpu")
    per_parent = [
        calculator.get_accuracy(embeddings[labels[:, 1] == p], labels[labels[:, 1] == p, 0])
        for p in labels[:, 1].unique()
    ]
    assert len(per_parent) == 3
    for metric in per_parent[0]:
        assert result[f"{metric}_level0"] == pytest.approx(np.mean([a[metric] for a in per_parent]))


def test_agrees_with_pml(pml):
    pytest.importorskip("faiss")
    from pytorch_metric_learning.testers import WithSameParentLabelTester as PMLTester
    from pytorch_metric_learning.utils.accuracy_calculator import (
        AccuracyCalculator as PMLCalculator,
    )

    trunk, embedder = models()
    splits = {"a": two_level_dataset(seed=3), "b": two_level_dataset(seed=4)}
    splits_to_eval = [("a", ["a", "b"]), ("b", ["a"])]
    options = {"k": 5, "exclude": ("AMI",)}
    expected = PMLTester(
        dataloader_num_workers=0,
        data_device="cpu",
        accuracy_calculator=PMLCalculator(device=torch.device("cpu"), **options),
    ).test(splits, 0, trunk, embedder, splits_to_eval=splits_to_eval)
    result = make_tester(accuracy_calculator=AccuracyCalculator(device="cpu", **options)).test(
        splits, 0, trunk, embedder, splits_to_eval=splits_to_eval
    )
    for split in expected:
        assert set(result[split]) == set(expected[split])
        for key, value in expected[split].items():
            np.testing.assert_allclose(result[split][key], value, rtol=1e-6, atol=1e-6, err_msg=key)


def test_needs_a_parent_level():
    trunk, embedder = models()
    with pytest.raises(ValueError, match="needs a parent level above label_hierarchy_level=0"):
        make_tester().test({"val": one_level_dataset()}, 0, trunk, embedder)
    with pytest.raises(ValueError, match="needs a parent level above label_hierarchy_level=1"):
        make_tester(label_hierarchy_level=1).test({"val": two_level_dataset()}, 0, trunk, embedder)
    with pytest.raises(ValueError, match="cannot return per-class"):
        make_tester(accuracy_calculator=AccuracyCalculator(return_per_class=True))
