import numpy as np
import pytest
import torch

from metric_runner.testers import GlobalEmbeddingSpaceTester
from metric_runner.utils.accuracy_calculator import AccuracyCalculator
from tests.testers.helpers import embed, models, one_level_dataset, two_level_dataset

KNN_ONLY = {"exclude": ("NMI", "AMI")}


def make_tester(**kwargs):
    kwargs.setdefault("accuracy_calculator", AccuracyCalculator(**KNN_ONLY, device="cpu"))
    return GlobalEmbeddingSpaceTester(
        dataloader_num_workers=0, data_device="cpu", batch_size=7, **kwargs
    )


def test_each_split_is_evaluated_against_itself_by_default():
    trunk, embedder = models()
    splits = {"train": one_level_dataset(seed=1), "val": one_level_dataset(seed=2)}
    result = make_tester().test(splits, 3, trunk, embedder)
    calculator = AccuracyCalculator(**KNN_ONLY, device="cpu")
    for name, dataset in splits.items():
        x, labels = dataset.tensors
        expected = calculator.get_accuracy(embed(x, trunk, embedder), labels)
        assert result[name] == {"epoch": 3, **{f"{m}_level0": v for m, v in expected.items()}}


def test_query_against_other_splits_puts_the_query_first():
    trunk, embedder = models()
    a, b = one_level_dataset(seed=1), one_level_dataset(seed=2)
    result = make_tester().test(
        {"a": a, "b": b}, 1, trunk, embedder, splits_to_eval=[("a", ["b", "a"]), ("b", ["a"])]
    )
    (xa, la), (xb, lb) = a.tensors, b.tensors
    ea, eb = embed(xa, trunk, embedder), embed(xb, trunk, embedder)
    calculator = AccuracyCalculator(**KNN_ONLY, device="cpu")
    expected_a = calculator.get_accuracy(
        ea, la, torch.cat([ea, eb]), torch.cat([la, lb]), ref_includes_query=True
    )
    expected_b = calculator.get_accuracy(eb, lb, ea, la)
    assert result["a"] == {"epoch": 1, **{f"{m}_level0": v for m, v in expected_a.items()}}
    assert result["b"] == {"epoch": 1, **{f"{m}_level0": v for m, v in expected_b.items()}}


def test_all_label_levels_and_their_average():
    trunk, embedder = models()
    dataset = two_level_dataset()
    result = make_tester(label_hierarchy_level="all").test({"val": dataset}, 0, trunk, embedder)[
        "val"
    ]
    x, labels = dataset.tensors
    embeddings = embed(x, trunk, embedder)
    calculator = AccuracyCalculator(**KNN_ONLY, device="cpu")
    levels = [calculator.get_accuracy(embeddings, labels[:, level]) for level in (0, 1)]
    for metric in levels[0]:
        assert result[f"{metric}_level0"] == levels[0][metric]
        assert result[f"{metric}_level1"] == levels[1][metric]
        assert result[f"AVERAGE_{metric}"] == pytest.approx(
            (levels[0][metric] + levels[1][metric]) / 2
        )
    level_1_only = make_tester(label_hierarchy_level=1).test({"val": dataset}, 0, trunk, embedder)[
        "val"
    ]
    assert set(level_1_only) == {"epoch", *(f"{m}_level1" for m in levels[1])}


def test_use_trunk_output_ignores_the_embedder():
    trunk, embedder = models()
    dataset = one_level_dataset()
    result = make_tester(use_trunk_output=True, normalize_embeddings=False).test(
        {"val": dataset}, 0, trunk, embedder
    )
    x, labels = dataset.tensors
    expected = AccuracyCalculator(**KNN_ONLY, device="cpu").get_accuracy(
        embed(x, trunk, normalize=False), labels
    )
    assert result["val"] == {"epoch": 0, **{f"{m}_level0": v for m, v in expected.items()}}


def test_end_of_testing_hook_sees_embeddings_and_accuracies():
    trunk, embedder = models()
    seen = {}

    def hook(t):
        seen["embeddings"] = {
            name: (emb.shape, lab.shape) for name, (emb, lab) in t.embeddings_and_labels.items()
        }
        seen["accuracies"] = dict(t.all_accuracies)

    t = make_tester(end_of_testing_hook=hook)
    result = t.test({"val": two_level_dataset()}, 2, trunk, embedder)
    assert seen["embeddings"] == {"val": (torch.Size([48, 3]), torch.Size([48, 2]))}
    assert seen["accuracies"] == dict(result)
    assert not hasattr(t, "embeddings_and_labels")


@pytest.mark.parametrize(
    "options",
    [
        {"label_hierarchy_level": "all"},
        {"label_hierarchy_level": 1, "use_trunk_output": True},
        {"normalize_embeddings": False},
    ],
)
def test_agrees_with_pml(pml, options):
    pytest.importorskip("faiss")
    from pytorch_metric_learning.testers import GlobalEmbeddingSpaceTester as PMLTester
    from pytorch_metric_learning.utils.accuracy_calculator import (
        AccuracyCalculator as PMLCalculator,
    )

    trunk, embedder = models()
    splits = {"a": two_level_dataset(seed=1), "b": two_level_dataset(seed=2)}
    ours = make_tester(
        accuracy_calculator=AccuracyCalculator(k="max_bin_count", device="cpu"), **options
    )
    theirs = PMLTester(
        dataloader_num_workers=0,
        data_device="cpu",
        batch_size=7,
        accuracy_calculator=PMLCalculator(k="max_bin_count", device=torch.device("cpu")),
        **options,
    )
    splits_to_eval = [("a", ["a", "b"]), ("b", ["b"])]
    expected = theirs.test(splits, 4, trunk, embedder, splits_to_eval=splits_to_eval)
    result = ours.test(splits, 4, trunk, embedder, splits_to_eval=splits_to_eval)
    assert set(result) == set(expected)
    for split in expected:
        assert set(result[split]) == set(expected[split])
        for key, value in expected[split].items():
            np.testing.assert_allclose(result[split][key], value, rtol=1e-6, atol=1e-6, err_msg=key)


def test_bad_splits_and_levels():
    trunk, embedder = models()
    splits = {"a": one_level_dataset()}
    with pytest.raises(ValueError, match=r"dataset_dict lacks"):
        make_tester().test(splits, 0, trunk, embedder, splits_to_eval=[("a", ["b"])])
    with pytest.raises(ValueError, match="Each query split can appear once"):
        make_tester().test(splits, 0, trunk, embedder, splits_to_eval=[("a", ["a"]), ("a", ["a"])])
    with pytest.raises(ValueError, match="label_hierarchy_level=1 but the labels have 1 level"):
        make_tester(label_hierarchy_level=1).test(splits, 0, trunk, embedder)
    with pytest.raises(ValueError, match="label_hierarchy_level must be an int"):
        make_tester(label_hierarchy_level="top")
