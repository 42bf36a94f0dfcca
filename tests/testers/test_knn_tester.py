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


def queries_and_gallery():
    """Queries at 0 (label 0), 10 (label 1), 20 (label 2); gallery at 1 (0), 9 (2), 11.5 (1),
    19 (2), 30 (1): the In-Shop layout, one query per class."""
    x = torch.tensor([[0.0], [10.0], [20.0], [1.0], [9.0], [11.5], [19.0], [30.0]])
    dataset = torch.utils.data.TensorDataset(x, torch.tensor([0, 1, 2, 0, 2, 1, 2, 1]))
    dataset.is_query = torch.tensor([True] * 3 + [False] * 5)
    return dataset


def test_per_class_rows_of_queries_against_a_gallery_count_the_queries_only():
    # k = 2 (the gallery's largest class). 0 -> 1 (hit), R = 1. 10 -> 9 (miss), 11.5 (hit),
    # R = 2: P@1 0, R-precision 1/2, MAP@R (0 + 1/2) / 2. 20 -> 19 (hit), 30 (miss), R = 2:
    # P@1 1, R-precision 1/2, MAP@R (1 + 0) / 2.
    expected = {
        "0": {
            "queries": 1,
            "precision_at_1": 1.0,
            "r_precision": 1.0,
            "mean_average_precision_at_r": 1.0,
        },
        "1": {
            "queries": 1,
            "precision_at_1": 0.0,
            "r_precision": 0.5,
            "mean_average_precision_at_r": 0.25,
        },
        "2": {
            "queries": 1,
            "precision_at_1": 1.0,
            "r_precision": 0.5,
            "mean_average_precision_at_r": 0.5,
        },
    }
    model = torch.nn.Identity()
    accuracies, per_class = make_tester(return_per_class=True).evaluate(
        {"test": queries_and_gallery()}, 0, model
    )
    assert list(per_class["test"]) == ["0", "1", "2"]
    for label, row in expected.items():
        assert per_class["test"][label] == pytest.approx(row, abs=1e-12)
    overall = {
        "precision_at_1": 2 / 3,
        "r_precision": 2 / 3,
        "mean_average_precision_at_r": 1.75 / 3,
    }
    plain, _ = make_tester().evaluate({"test": queries_and_gallery()}, 0, model)
    assert plain["test"] == pytest.approx(overall, abs=1e-12)
    assert accuracies["test"] == pytest.approx(overall, abs=1e-12)


def brute_force(x, labels, queries, gallery):
    """Mean P@1, R-precision and MAP@R of `queries` ranking `gallery` (rows of x) by squared
    L2 distance, each query's own row left out; queries with nothing relevant are skipped."""
    values = {name: [] for name in METRICS}
    per_class_queries = {}
    for query in queries:
        references = [row for row in gallery if row != query]
        distances = [float(((x[row] - x[query]) ** 2).sum()) for row in references]
        ranking = [references[i] for i in sorted(range(len(references)), key=distances.__getitem__)]
        hits = [int(labels[row] == labels[query]) for row in ranking]
        r = sum(hits)
        if r == 0:
            continue
        label = str(int(labels[query]))
        per_class_queries[label] = per_class_queries.get(label, 0) + 1
        values["precision_at_1"].append(hits[0])
        values["r_precision"].append(sum(hits[:r]) / r)
        values["mean_average_precision_at_r"].append(
            sum(hits[i] * sum(hits[: i + 1]) / (i + 1) for i in range(r)) / r
        )
    means = {name: sum(v) / len(v) for name, v in values.items()}
    return means, dict(sorted(per_class_queries.items()))


def random_split(is_query, is_gallery, seed=0):
    generator = torch.Generator().manual_seed(seed)
    n = len(is_query)
    x = torch.randn(n, 3, generator=generator)
    labels = torch.randint(0, 4, (n,), generator=generator)
    dataset = torch.utils.data.TensorDataset(x, labels)
    dataset.is_query, dataset.is_gallery = torch.tensor(is_query), torch.tensor(is_gallery)
    return dataset


def rows(mask):
    return [i for i, value in enumerate(mask) if value]


# 30 items. Case 1: all both. Case 2: 8 queries, a separate gallery, 4 items in neither.
# Case 3: 8 queries inside a gallery with 18 more items (distractors), 4 items in neither.
CASES = {
    "all_both": ([True] * 30, [True] * 30),
    "disjoint": ([True] * 8 + [False] * 22, [False] * 8 + [True] * 18 + [False] * 4),
    "queries_in_gallery": ([True] * 8 + [False] * 22, [True] * 26 + [False] * 4),
}


@pytest.mark.parametrize("case", CASES)
def test_query_gallery_cases_match_a_brute_force_ranking(case):
    is_query, is_gallery = CASES[case]
    dataset = random_split(is_query, is_gallery)
    x, labels = dataset.tensors
    expected, expected_counts = brute_force(x, labels, rows(is_query), rows(is_gallery))
    accuracies, per_class = make_tester(include=METRICS, return_per_class=True).evaluate(
        {"test": dataset}, 0, torch.nn.Identity()
    )
    assert accuracies["test"] == pytest.approx(expected, abs=1e-12)
    assert {c: row["queries"] for c, row in per_class["test"].items()} == expected_counts
    if case == "all_both":  # the ordinary evaluation of the split against itself
        del dataset.is_query, dataset.is_gallery
        within, _ = make_tester(include=METRICS).evaluate({"test": dataset}, 0, torch.nn.Identity())
        assert within["test"] == pytest.approx(expected, abs=1e-12)


def test_a_query_in_the_gallery_skips_its_own_row_not_a_tied_neighbour():
    # Rows 0 and 1 are the same point with different labels; row 2 (label 0) is further away.
    # Each of rows 0 and 1 must find the other first (a miss): dropping the first neighbour
    # instead of the own row would leave row 1 finding itself (a hit).
    x = torch.tensor([[0.0], [0.0], [0.5], [0.6], [5.0]])
    dataset = torch.utils.data.TensorDataset(x, torch.tensor([0, 1, 0, 1, 2]))
    dataset.is_query = torch.tensor([True, True, False, False, False])
    dataset.is_gallery = torch.tensor([True, True, True, True, False])
    accuracies, _ = make_tester(include=("precision_at_1",)).evaluate(
        {"test": dataset}, 0, torch.nn.Identity()
    )
    assert accuracies["test"]["precision_at_1"] == 0.0


def test_queries_both_inside_and_outside_the_gallery_are_refused():
    is_query = [True] * 8 + [False] * 22
    is_gallery = [True] * 3 + [False] * 5 + [True] * 22
    message = (
        "split 'test': 3 rows are queries in the gallery \\(is_query and is_gallery true\\) "
        "and 5 rows are queries outside it \\(is_query true, is_gallery false\\); make every "
        "query a gallery item"
    )
    with pytest.raises(ValueError, match=message):
        make_tester().evaluate({"test": random_split(is_query, is_gallery)}, 0, torch.nn.Identity())
