"""KNNTester (the runner's tester, on GlobalEmbeddingSpaceTester): overall and per-class
retrieval metrics from one search, and plots."""

import pytest
import torch

from metric_runner.testers import KNNTester
from metric_runner.utils.accuracy_calculator import AccuracyCalculator

METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def line_dataset():
    """1-D points whose rankings are easy to write out: label 0 at 0, 1, 2; label 1 at 2.5, 9;
    label 2 at 20 (alone in its split)."""
    x = torch.tensor([[0.0], [1.0], [2.0], [2.5], [9.0], [20.0]])
    return torch.utils.data.TensorDataset(x, torch.tensor([0, 0, 0, 1, 1, 2]))


def make_tester(**kwargs):
    # Identity "model" and no normalization: the 1-D points are the embeddings.
    return KNNTester(normalize_embeddings=False, batch_size=4, data_device="cpu", **kwargs)


def test_per_class_values_by_hand_and_the_overall_mean_from_the_same_search():
    # k = max_bin_count = 3 - 1 (itself). Without itself: 0 -> 1, 2 (both label 0); 1 -> 0, 2
    # (tie, 0 first); 2 -> 2.5 (label 1), then 1; 2.5 -> 2, 1 (label 0, no hit within k);
    # 9 -> 2.5 first; 20 is lone. R = 2 for label 0, 1 for label 1.
    # precision_at_1: label 0: (1 + 1 + 0) / 3, label 1: (0 + 1) / 2.
    # MAP@R (ranks <= R): label 0: (1 + 1 + 1/2 / 2) / 3, label 1: (0 + 1) / 2.
    model = torch.nn.Identity()
    accuracies, per_class = make_tester(return_per_class=True).evaluate(
        {"val": line_dataset()}, 0, model
    )
    expected = {
        "0": {
            "queries": 3,
            "precision_at_1": 2 / 3,
            "r_precision": (1 + 1 + 1 / 2) / 3,
            "mean_average_precision_at_r": (1 + 1 + 1 / 4) / 3,
        },
        "1": {
            "queries": 2,
            "precision_at_1": 1 / 2,
            "r_precision": 1 / 2,
            "mean_average_precision_at_r": 1 / 2,
        },
    }
    assert list(per_class["val"]) == ["0", "1"]
    for label, row in expected.items():
        assert per_class["val"][label] == pytest.approx(row, abs=1e-12)
    plain, _ = make_tester().evaluate({"val": line_dataset()}, 0, model)
    assert accuracies["val"] == pytest.approx(plain["val"], abs=1e-12)
    assert plain["val"]["precision_at_1"] == pytest.approx(3 / 5)
    assert make_tester().evaluate({"val": line_dataset()}, 0, model)[1] is None


def test_per_class_matches_the_accuracy_calculator_on_clustered_data():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(5).repeat_interleave(torch.tensor([3, 8, 5, 2, 6]))
    x = torch.randn(len(labels), 4, generator=generator) + labels.unsqueeze(1).float()
    dataset = torch.utils.data.TensorDataset(x, labels)
    accuracies, per_class = KNNTester(
        return_per_class=True, include=METRICS + ("NMI",), data_device="cpu"
    ).evaluate({"test": dataset}, 0, torch.nn.Identity())
    embeddings = torch.nn.functional.normalize(x, dim=1)
    expected = AccuracyCalculator(
        include=METRICS, k="max_bin_count", return_per_class=True
    ).get_accuracy(embeddings, labels, embeddings, labels, ref_includes_query=True)
    for metric in METRICS:
        assert [row[metric] for row in per_class["test"].values()] == expected[metric]
    assert [row["queries"] for row in per_class["test"].values()] == [3, 8, 5, 2, 6]
    overall, _ = KNNTester(include=METRICS, data_device="cpu").evaluate(
        {"test": dataset}, 0, torch.nn.Identity()
    )
    for metric in METRICS:
        assert accuracies["test"][metric] == pytest.approx(overall["test"][metric], abs=1e-12)
    assert 0 < accuracies["test"]["NMI"] <= 1


def test_visualize_saves_a_png_per_split_only_where_asked(tmp_path):
    pytest.importorskip("matplotlib")
    splits = {"val": line_dataset(), "test": line_dataset()}
    model = torch.nn.Linear(1, 3)
    make_tester(visualize=True).evaluate(splits, 4, model, plot_dir=tmp_path)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == 2 and all(name.endswith("_epoch4.png") for name in pngs)
    assert [name.split("_")[0] for name in pngs] == ["test", "val"]
    for path in tmp_path.glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    make_tester(visualize=True).evaluate(splits, 5, model)  # no folder: no plot
    make_tester().evaluate(splits, 5, model, plot_dir=tmp_path / "off")
    assert len(list(tmp_path.rglob("*.png"))) == 2


def test_a_split_of_queries_and_a_gallery_searches_the_gallery_only():
    # Queries at 0 (label 0) and 10 (label 1); gallery: 9 (label 0), 1 and 11.5 (label 1).
    # 0 -> 1 (wrong): R = 1, r_precision 0; 10 -> 9 (wrong), 11.5: R = 2, r_precision 1/2.
    # Searching the whole split instead gives other values (checked last).
    x = torch.tensor([[0.0], [10.0], [9.0], [1.0], [11.5]])
    dataset = torch.utils.data.TensorDataset(x, torch.tensor([0, 1, 0, 1, 1]))
    dataset.is_query = torch.tensor([True, True, False, False, False])
    accuracies, _ = make_tester(include=("precision_at_1", "r_precision")).evaluate(
        {"test": dataset}, 0, torch.nn.Identity()
    )
    assert accuracies["test"] == pytest.approx({"precision_at_1": 0.0, "r_precision": 0.25})
    del dataset.is_query
    within, _ = make_tester(include=("precision_at_1", "r_precision")).evaluate(
        {"test": dataset}, 0, torch.nn.Identity()
    )
    assert within["test"] != pytest.approx(accuracies["test"])
