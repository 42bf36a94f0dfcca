import logging
import math

import numpy as np
import pytest
import torch

from metric_runner.distances import CosineSimilarity
from metric_runner.utils import accuracy_calculator as ac_module
from metric_runner.utils import inference
from metric_runner.utils.accuracy_calculator import AccuracyCalculator, adjusted_mutual_info
from tests.helpers import TEST_DEVICE, clustered_embeddings

pytestmark = pytest.mark.usefixtures("single_threaded_faiss")


KNN_METRICS = (
    "mean_average_precision",
    "mean_average_precision_at_r",
    "mean_reciprocal_rank",
    "precision_at_1",
    "r_precision",
)


def calculator(**kwargs):
    return AccuracyCalculator(device=TEST_DEVICE, **kwargs)


def column(values):
    return torch.tensor([[float(v)] for v in values], device=TEST_DEVICE)


def labels(values):
    return torch.tensor(values, device=TEST_DEVICE)


def textbook_values(relevance, num_relevant):
    """The metrics' definitions for one query, written out with a loop over its ranking."""
    k = len(relevance)
    limit = min(num_relevant, k)
    hits = sum_precision = sum_precision_at_r = 0.0
    first_hit_rank = None
    for i, relevant in enumerate(relevance):
        if relevant:
            hits += 1
            sum_precision += hits / (i + 1)
            sum_precision_at_r += hits / (i + 1) if i < limit else 0.0
            first_hit_rank = first_hit_rank or i + 1
    return {
        "precision_at_1": float(relevance[0]),
        "mean_reciprocal_rank": 1 / first_hit_rank if first_hit_rank else 0.0,
        "r_precision": sum(relevance[:limit]) / limit,
        "mean_average_precision": sum_precision / num_relevant,
        "mean_average_precision_at_r": sum_precision_at_r / num_relevant,
    }


def brute_force_accuracy(
    query, query_labels, reference, reference_labels, ref_includes_query, k, mode
):
    """Ranks every query with an explicit loop (squared L2, ties by index), drops lone queries,
    and averages globally, per class, or per class then over classes."""
    per_query, kept_labels = [], []
    for i in range(len(query)):
        distances = ((reference - query[i]) ** 2).sum(dim=1).tolist()
        order = sorted(range(len(reference)), key=lambda j: (distances[j], j))
        if ref_includes_query:
            order.remove(i)
        same = [int(reference_labels[j] == query_labels[i]) for j in order]
        if sum(same) == 0:
            continue
        num_search = len(order) if k is None else min(k, len(order))
        per_query.append(textbook_values(same[:num_search], sum(same)))
        kept_labels.append(int(query_labels[i]))
    result = {}
    for metric in KNN_METRICS:
        values = np.array([v[metric] for v in per_query])
        classes = sorted(set(kept_labels))
        per_class = [values[np.array(kept_labels) == c].mean() for c in classes]
        result[metric] = {
            "global": values.mean(),
            "per_class": per_class,
            "avg_of_avgs": np.mean(per_class),
        }[mode]
    return result


def assert_accuracies_close(actual, expected, tol=1e-10):
    assert set(actual) == set(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=tol, atol=tol, err_msg=name)


# ---------------------------------------------------------------- hand-computed rankings


def test_hand_computed_single_query():
    # 1-D embeddings make the ranking explicit: references at 1..5 with labels 1,0,1,0,0, so the
    # relevance of ranks 1..5 is 0,1,0,1,1 and R = 3.
    result = calculator(exclude=("NMI", "AMI")).get_accuracy(
        column([0]), labels([0]), column([1, 2, 3, 4, 5]), labels([1, 0, 1, 0, 0])
    )
    expected = {
        "precision_at_1": 0.0,
        "mean_reciprocal_rank": 1 / 2,
        "r_precision": 1 / 3,  # ranks 1..3 hold one relevant
        "mean_average_precision_at_r": (1 / 2) / 3,
        "mean_average_precision": (1 / 2 + 2 / 4 + 3 / 5) / 3,
    }
    assert_accuracies_close(result, expected)


def test_k_smaller_than_the_class_size(caplog):
    # relevance 1,1,0,1,1 and R = 4; with k = 3 only ranks 1..3 are seen.
    with caplog.at_level(logging.WARNING):
        result = calculator(exclude=("NMI", "AMI"), k=3).get_accuracy(
            column([0]), labels([0]), column([1, 2, 3, 4, 5]), labels([0, 0, 1, 0, 0])
        )
    expected = {
        "precision_at_1": 1.0,
        "mean_reciprocal_rank": 1.0,
        "r_precision": 2 / 3,  # min(R, k) = 3 ranks, two relevant
        "mean_average_precision_at_r": (1 + 1) / 4,
        "mean_average_precision": (1 + 1) / 4,
    }
    assert_accuracies_close(result, expected)
    assert "k=3 is smaller than the largest number of relevant references (4)" in caplog.text


def test_ties_are_broken_by_the_lower_reference_index():
    query, reference = column([0]), column([1, 1, 2])
    first_is_wrong = calculator(include=("precision_at_1", "mean_average_precision")).get_accuracy(
        query, labels([0]), reference, labels([1, 0, 0])
    )
    first_is_right = calculator(include=("precision_at_1",)).get_accuracy(
        query, labels([0]), reference, labels([0, 1, 0])
    )
    assert first_is_wrong["precision_at_1"] == 0.0
    assert first_is_wrong["mean_average_precision"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert first_is_right["precision_at_1"] == 1.0


def test_lone_query_labels_are_excluded(caplog):
    reference, reference_labels = column([1, 2, 3, 4, 5]), labels([1, 0, 1, 0, 0])
    alone = calculator(exclude=("NMI", "AMI")).get_accuracy(
        column([0]), labels([0]), reference, reference_labels
    )
    # Label 7 is not in the reference: that query would score 0 whatever the embedding.
    with_lone = calculator(exclude=("NMI", "AMI")).get_accuracy(
        column([0, 0.1, 10]), labels([0, 0, 7]), reference, reference_labels
    )
    assert_accuracies_close(with_lone, alone)
    per_class = calculator(exclude=("NMI", "AMI"), return_per_class=True).get_accuracy(
        column([0, 0.1, 10]), labels([0, 0, 7]), reference, reference_labels
    )
    assert per_class["precision_at_1"] == [0.0]
    with caplog.at_level(logging.WARNING):
        all_lone = calculator(exclude=("NMI", "AMI")).get_accuracy(
            column([0, 1]), labels([5, 6]), reference, reference_labels
        )
    assert all(math.isnan(v) for v in all_lone.values())
    assert "None of the query labels are in the reference set" in caplog.text


def test_ref_includes_query_never_retrieves_the_query_itself():
    # Points 0..4, labels 0,0,1,1,2. Without itself: query 0 -> 1 (hit); query 1 -> 0 and 2 tie,
    # 0 first (hit); query 2 -> 1 and 3 tie, 1 first (miss), then 3 (hit at rank 2); query 3 ->
    # 2 first (hit). Label 2 is alone once the query itself is removed.
    x, x_labels = column([0, 1, 2, 3, 4]), labels([0, 0, 1, 1, 2])
    expected = {"precision_at_1": 3 / 4, "mean_reciprocal_rank": (1 + 1 + 1 / 2 + 1) / 4}
    include = tuple(expected)
    assert_accuracies_close(calculator(include=include).get_accuracy(x, x_labels), expected)
    assert_accuracies_close(
        calculator(include=include).get_accuracy(x, x_labels, x, x_labels, True), expected
    )
    prefix = calculator(include=include).get_accuracy(x[:3], x_labels[:3], x, x_labels, True)
    assert_accuracies_close(
        prefix, {"precision_at_1": 2 / 3, "mean_reciprocal_rank": (1 + 1 + 1 / 2) / 3}
    )
    # Without ref_includes_query every query finds itself at distance 0.
    itself = calculator(include=include).get_accuracy(x, x_labels, x, x_labels, False)
    assert_accuracies_close(itself, {"precision_at_1": 1.0, "mean_reciprocal_rank": 1.0})


def test_avg_of_avgs_and_return_per_class():
    # Queries at 0 and 5.2 (label 0) both see relevance 1,1,0,1,1 (R = 4); the query at 2.9
    # (label 1) sees its single relevant first.
    query, query_labels = column([0, 2.9, 5.2]), labels([0, 1, 0])
    reference, reference_labels = column([1, 2, 3, 4, 5]), labels([0, 0, 1, 0, 0])
    label_0 = textbook_values([1, 1, 0, 1, 1], 4)
    label_1 = textbook_values([1, 0, 0, 0, 0], 1)
    for mode, combine in [
        ({}, lambda a, b: (2 * a + b) / 3),
        ({"avg_of_avgs": True}, lambda a, b: (a + b) / 2),
        ({"return_per_class": True}, lambda a, b: [a, b]),
    ]:
        result = calculator(exclude=("NMI", "AMI"), **mode).get_accuracy(
            query, query_labels, reference, reference_labels
        )
        assert_accuracies_close(result, {m: combine(label_0[m], label_1[m]) for m in KNN_METRICS})


def test_k_beyond_the_reference_size_is_the_whole_reference():
    args = (column([0, 2.9]), labels([0, 1]), column([1, 2, 3, 4, 5]), labels([0, 0, 1, 0, 0]))
    assert calculator(exclude=("NMI", "AMI"), k=100).get_accuracy(*args) == calculator(
        exclude=("NMI", "AMI")
    ).get_accuracy(*args)


def test_non_reflexive_label_comparison_counts_only_real_matches():
    # A match needs the same first column and a different second column, so no row matches
    # itself: its relevant set is the other rows that match, and nothing is subtracted.
    def first_same_second_different(x, y):
        return (x[:, 0] == y[:, 0]) & (x[:, 1] != y[:, 1])

    x = column([0, 1, 2, 3])
    x_labels = labels([[0, 0], [0, 1], [0, 0], [1, 0]])
    result = calculator(
        include=("mean_average_precision", "precision_at_1"),
        label_comparison_fn=first_same_second_different,
    ).get_accuracy(x, x_labels)
    # query 0: ranking 1,2,3 relevance 1,0,0 (R=1) -> AP 1;  query 1: ranking 0,2,3 (tie 0/2 by
    # index) relevance 1,1,0 (R=2) -> AP 1;  query 2: ranking 1,3,0 relevance 1,0,0 (R=1) -> AP 1;
    # query 3: no match -> lone.
    assert result == {"mean_average_precision": 1.0, "precision_at_1": 1.0}


# ---------------------------------------------------------------- random data, every option

MODES = {
    "global": {},
    "per_class": {"return_per_class": True},
    "avg_of_avgs": {"avg_of_avgs": True},
}
REFERENCE_SETUPS = ["self", "separate", "includes_query"]


def split_reference(x, x_labels, setup):
    if setup == "self":
        return x, x_labels, None, None, False
    if setup == "separate":
        return x[:40], x_labels[:40], x[40:], x_labels[40:], False
    return x[:40], x_labels[:40], x, x_labels, True


@pytest.mark.parametrize("k", [None, 1, 7, "max_bin_count"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("setup", REFERENCE_SETUPS)
def test_matches_textbook_definitions_on_random_data(k, mode, setup):
    x, x_labels = clustered_embeddings(num_classes=7, per_class=13, dim=6, spread=1.5, seed=3)
    x = x.detach()
    query, query_labels, reference, reference_labels, includes = split_reference(x, x_labels, setup)
    result = calculator(exclude=("NMI", "AMI"), k=k, **MODES[mode]).get_accuracy(
        query, query_labels, reference, reference_labels, includes
    )
    if reference is None:
        reference, reference_labels, includes = query, query_labels, True
    if k == "max_bin_count":
        k = int(torch.bincount(reference_labels).max()) - int(includes)
    expected = brute_force_accuracy(
        query, query_labels, reference, reference_labels, includes, k, mode
    )
    assert_accuracies_close(result, expected)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"k": 5},
        {"k": "max_bin_count", "avg_of_avgs": True},
        {"k": 9, "return_per_class": True},
        {"include": ("precision_at_1", "AMI")},
        {"exclude": ("mean_average_precision",)},
    ],
)
@pytest.mark.parametrize("setup", REFERENCE_SETUPS)
def test_agrees_with_pml(pml, options, setup):
    pytest.importorskip("faiss")
    from pytorch_metric_learning.utils.accuracy_calculator import (
        AccuracyCalculator as PMLAccuracyCalculator,
    )

    x, x_labels = clustered_embeddings(num_classes=9, per_class=11, dim=8, spread=1.2, seed=5)
    args = split_reference(x.detach(), x_labels, setup)
    ours = calculator(**options).get_accuracy(*args)
    theirs = PMLAccuracyCalculator(device=TEST_DEVICE, **options).get_accuracy(*args)
    # PML computes the reciprocal rank in float32.
    assert_accuracies_close(ours, theirs, tol=1e-6)


def test_agrees_with_pml_with_custom_knn_and_kmeans_funcs(pml):
    pytest.importorskip("faiss")
    from pytorch_metric_learning.distances import CosineSimilarity as PMLCosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import (
        AccuracyCalculator as PMLAccuracyCalculator,
    )
    from pytorch_metric_learning.utils.inference import CustomKNN as PMLCustomKNN
    from pytorch_metric_learning.utils.inference import FaissKMeans as PMLFaissKMeans

    x, x_labels = clustered_embeddings(num_classes=7, per_class=10, dim=8, spread=1.5, seed=6)
    for setup in REFERENCE_SETUPS:
        args = split_reference(x.detach(), x_labels, setup)
        ours = calculator(
            k=8,
            knn_func=inference.CustomKNN(CosineSimilarity(), batch_size=16),
            kmeans_func=inference.FaissKMeans(niter=3, seed=5),
        ).get_accuracy(*args)
        theirs = PMLAccuracyCalculator(
            k=8,
            device=TEST_DEVICE,
            knn_func=PMLCustomKNN(PMLCosineSimilarity(), batch_size=16),
            kmeans_func=PMLFaissKMeans(niter=3, seed=5),
        ).get_accuracy(*args)
        assert_accuracies_close(ours, theirs, tol=1e-6)


def test_default_clustering_is_pmls_on_data_without_clusters(pml):
    """With no cluster structure k-means has not converged after a few iterations, so this
    catches any difference in the default k-means settings (iterations, seed, sampling)."""
    pytest.importorskip("faiss")
    from pytorch_metric_learning.utils.accuracy_calculator import (
        AccuracyCalculator as PMLAccuracyCalculator,
    )

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 16, generator=generator).to(TEST_DEVICE)
    x_labels = torch.randint(0, 40, (3000,), generator=generator).to(TEST_DEVICE)
    ours = calculator(include=("NMI", "AMI")).get_accuracy(x, x_labels)
    theirs = PMLAccuracyCalculator(include=("NMI", "AMI"), device=TEST_DEVICE).get_accuracy(
        x, x_labels
    )
    assert_accuracies_close(ours, theirs, tol=1e-9)
    # faiss's own default (25 iterations) would give other clusters here.
    faiss_default = calculator(include=("NMI",), kmeans_func=inference.FaissKMeans()).get_accuracy(
        x, x_labels
    )
    assert abs(faiss_default["NMI"] - ours["NMI"]) > 1e-4


def test_agrees_with_pml_for_a_reflexive_label_comparison_fn(pml):
    from pytorch_metric_learning.utils.accuracy_calculator import (
        AccuracyCalculator as PMLAccuracyCalculator,
    )

    def same_first_level(x, y):
        return x[..., 0] == y[..., 0]

    x, _ = clustered_embeddings(num_classes=6, per_class=10, dim=8, seed=2)
    two_level = torch.randint(0, 3, (60, 2), generator=torch.Generator().manual_seed(0)).to(
        TEST_DEVICE
    )
    for options in [
        {"k": 12},
        {"avg_of_avgs": True},
        {"return_per_class": True, "k": "max_bin_count"},
    ]:
        kwargs = dict(exclude=("NMI", "AMI"), label_comparison_fn=same_first_level, **options)
        ours = calculator(**kwargs).get_accuracy(x.detach(), two_level)
        theirs = PMLAccuracyCalculator(device=TEST_DEVICE, **kwargs).get_accuracy(
            x.detach(), two_level
        )
        assert_accuracies_close(ours, theirs, tol=1e-6)


def test_float32_and_float64_agree(dtype):
    x, x_labels = clustered_embeddings(
        num_classes=6, per_class=9, dim=8, seed=4, dtype=torch.float64
    )
    reference = calculator(exclude=("NMI", "AMI")).get_accuracy(x.detach(), x_labels)
    result = calculator(exclude=("NMI", "AMI")).get_accuracy(x.detach().to(dtype), x_labels)
    assert_accuracies_close(result, reference, tol=1e-6)


def test_numpy_inputs_are_accepted():
    x, x_labels = clustered_embeddings(num_classes=5, per_class=6, dim=4, seed=1)
    x = x.detach()
    from_numpy = calculator(exclude=("NMI", "AMI")).get_accuracy(
        x.cpu().numpy(), x_labels.cpu().numpy()
    )
    assert from_numpy == calculator(exclude=("NMI", "AMI")).get_accuracy(x, x_labels)


# ---------------------------------------------------------------- streaming and chunking


def test_k_none_streams_the_same_values_as_a_materialized_search(monkeypatch):
    x, x_labels = clustered_embeddings(num_classes=8, per_class=10, dim=6, spread=1.5, seed=7)
    x = x.detach()
    for setup in REFERENCE_SETUPS:
        args = split_reference(x, x_labels, setup)
        num_others = len(args[2] if args[2] is not None else args[0]) - int(
            args[4] or args[2] is None
        )
        materialized = calculator(exclude=("NMI", "AMI"), k=num_others).get_accuracy(*args)
        streamed = calculator(exclude=("NMI", "AMI")).get_accuracy(*args)
        monkeypatch.setattr(ac_module, "STREAM_BLOCK_ELEMENTS", 7 * len(x))  # 7-row blocks
        small_blocks = calculator(exclude=("NMI", "AMI")).get_accuracy(*args)
        monkeypatch.undo()
        assert streamed == materialized == small_blocks


def test_order_keys_sort_like_values_then_column():
    values = torch.tensor([[0.5, -0.0, 0.0, -2.0, 0.5, 3.0, -2.0, 1e-30, -1e-30]])
    expected = sorted(range(values.shape[1]), key=lambda j: (values[0, j].item(), j))
    assert torch.argsort(ac_module.order_keys(values, largest=False)[0]).tolist() == expected
    expected = sorted(range(values.shape[1]), key=lambda j: (-values[0, j].item(), j))
    assert torch.argsort(ac_module.order_keys(values, largest=True)[0]).tolist() == expected


def test_k_none_with_ties_and_similarities_streams_like_the_full_sort():
    grid = (
        torch.randint(0, 3, (120, 2), generator=torch.Generator().manual_seed(1))
        .float()
        .to(TEST_DEVICE)
    )
    grid_labels = (grid[:, 0] + torch.arange(120, device=TEST_DEVICE) % 2).long()
    for knn_func in [
        None,
        inference.CustomKNN(ac_module.LpDistance(p=1)),
        inference.CustomKNN(CosineSimilarity()),
    ]:
        options = {"exclude": ("NMI", "AMI"), "knn_func": knn_func}
        streamed = calculator(**options).get_accuracy(grid + 0.1, grid_labels)
        materialized = calculator(k=119, **options).get_accuracy(grid + 0.1, grid_labels)
        assert streamed == materialized


def test_block_sizes_do_not_change_results(monkeypatch):
    x, x_labels = clustered_embeddings(num_classes=8, per_class=12, dim=6, spread=1.5, seed=8)
    x = x.detach()
    options = {"exclude": ("NMI", "AMI"), "k": "max_bin_count", "return_per_class": True}
    whole = calculator(**options).get_accuracy(x, x_labels)
    monkeypatch.setattr(inference, "SEARCH_BLOCK_ELEMENTS", 5 * len(x))
    monkeypatch.setattr(ac_module, "VALUES_BLOCK_ELEMENTS", 3 * 11)
    assert calculator(**options).get_accuracy(x, x_labels) == whole


def test_stream_memory_is_one_block_not_the_full_matrix(monkeypatch):
    seen_shapes = []
    knn = inference.CustomKNN(ac_module.LpDistance(normalize_embeddings=False, power=2))

    def recording_knn(query, k, reference, ref_includes_query):
        seen_shapes.append((len(query), k))
        return knn(query, k, reference, ref_includes_query)

    monkeypatch.setattr(ac_module, "STREAM_BLOCK_ELEMENTS", 10 * 200)
    x, x_labels = clustered_embeddings(num_classes=10, per_class=20, dim=4, seed=9)
    calculator(exclude=("NMI", "AMI"), knn_func=recording_knn).get_accuracy(x.detach(), x_labels)
    assert seen_shapes == [(10, 200)] * 20


# ---------------------------------------------------------------- extending the calculator


class WithCustomMetrics(AccuracyCalculator):
    def calculate_precision_at_2(self, knn_labels, query_labels, not_lone_query_mask, **kwargs):
        hits = (knn_labels[:, :2] == query_labels.unsqueeze(1)).double().mean(dim=1)
        return hits[not_lone_query_mask].mean().item()

    def calculate_num_clusters(self, cluster_labels, **kwargs):
        return len(torch.unique(cluster_labels))

    def requires_knn(self):
        return super().requires_knn() + ["precision_at_2"]

    def requires_clustering(self):
        return super().requires_clustering() + ["num_clusters"]


def test_subclass_metrics_receive_neighbours_and_clusters():
    pytest.importorskip("faiss")
    query, query_labels = column([0, 0.2, 5, 5.3]), labels([0, 0, 1, 1])
    reference, reference_labels = column([0.1, 5.1, 5.2, 9]), labels([0, 1, 1, 0])
    calc = WithCustomMetrics(device=TEST_DEVICE, include=("precision_at_2", "num_clusters"))
    result = calc.get_accuracy(query, query_labels, reference, reference_labels)
    # label 0 queries: neighbours 0.1 (hit) then 5.1 (miss); label 1 queries: 5.1, 5.2 (hits).
    assert result == {"precision_at_2": (0.5 + 0.5 + 1 + 1) / 4, "num_clusters": 2}
    assert "precision_at_2" in calc.get_curr_metrics() and "NMI" not in calc.get_curr_metrics()


def test_custom_knn_metric_with_k_none_gets_the_whole_ranking():
    calc = WithCustomMetrics(device=TEST_DEVICE, include=("precision_at_2", "precision_at_1"))
    x, x_labels = column([0, 1, 2, 10, 11]), labels([0, 0, 1, 1, 1])
    result = calc.get_accuracy(x, x_labels)
    # query 0 -> 1 (hit), 2; query 1 -> 0 and 2 tie, 0 first (hit), 2 (miss);
    # query 2 -> 1 (miss), 0 (miss); query 10 -> 11 (hit), 2 (hit); query 11 -> 10 (hit), 2 (hit)
    assert result["precision_at_2"] == pytest.approx((0.5 + 0.5 + 0 + 1 + 1) / 5)
    assert result["precision_at_1"] == pytest.approx(4 / 5)


def test_include_and_exclude_select_metrics():
    calc = calculator(include=("precision_at_1", "NMI"))
    assert calc.get_curr_metrics() == ["NMI", "precision_at_1"]  # PML's (alphabetical) order
    assert calculator(exclude=("NMI", "AMI")).get_curr_metrics() == sorted(KNN_METRICS)
    x, x_labels = column([0, 1, 2, 3]), labels([0, 0, 1, 1])
    # get_accuracy's include/exclude narrow the constructor's selection, as in PML.
    assert list(calc.get_accuracy(x, x_labels, include=("precision_at_1",))) == ["precision_at_1"]
    assert calc.get_accuracy(x, x_labels, include=("r_precision",)) == {}
    # A metric alone that needs neighbours gets them (mean_reciprocal_rank included). Query 2's
    # nearest are 1 and 3 at equal distance: 1 comes first (miss), so its reciprocal rank is 1/2.
    assert calculator(include=("mean_reciprocal_rank",)).get_accuracy(x, x_labels) == {
        "mean_reciprocal_rank": (1 + 1 + 1 / 2 + 1) / 4
    }


# ---------------------------------------------------------------- clustering metrics


def test_adjusted_mutual_info_equals_sklearn():
    from sklearn.metrics import adjusted_mutual_info_score

    rng = np.random.default_rng(0)
    for n, num_classes, num_clusters in [
        (50, 3, 4),
        (200, 10, 10),
        (500, 40, 25),
        (7, 7, 7),
        (30, 1, 5),
    ]:
        truth = rng.integers(0, num_classes, n)
        predicted = rng.integers(0, num_clusters, n)
        for pred in (predicted, truth, (truth + (rng.random(n) < 0.3)) % num_classes):
            assert adjusted_mutual_info(truth, pred) == pytest.approx(
                adjusted_mutual_info_score(truth, pred), abs=1e-12
            )
    # Equal class sizes are where summing per distinct size pair pays off.
    truth = np.repeat(np.arange(100), 20)
    predicted = (truth + rng.integers(0, 2, len(truth))) % 100
    assert adjusted_mutual_info(truth, predicted) == pytest.approx(
        adjusted_mutual_info_score(truth, predicted), abs=1e-12
    )


def test_nmi_and_ami_of_a_perfect_clustering_are_one():
    pytest.importorskip("faiss")
    x = column([0, 0.1, 0.2, 50, 50.1, 50.2, 100, 100.1])
    result = calculator(include=("NMI", "AMI")).get_accuracy(x, labels([3, 3, 3, 5, 5, 5, 9, 9]))
    assert result == pytest.approx({"NMI": 1.0, "AMI": 1.0})


def test_kmeans_func_is_called_with_the_number_of_query_labels():
    calls = []

    def kmeans(x, num_clusters):
        calls.append(num_clusters)
        return torch.zeros(len(x), dtype=torch.long)

    calculator(include=("NMI",), kmeans_func=kmeans).get_accuracy(
        column([0, 1, 2, 3]), labels([4, 4, 6, 8])
    )
    assert calls == [3]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"avg_of_avgs": True, "return_per_class": True}, "mutually exclusive"),
        ({"k": 0}, "k must be an integer > 0"),
        ({"k": "all"}, "k must be an integer > 0"),
        ({"include": ("precision_at_5",)}, "Unknown metric"),
        ({"exclude": ("nmi",)}, "Unknown metric"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AccuracyCalculator(**kwargs)


def test_bad_get_accuracy_inputs():
    calc = calculator(exclude=("NMI", "AMI"))
    x, x_labels = column([0, 1, 2, 3]), labels([0, 0, 1, 1])
    with pytest.raises(ValueError, match="has 4 rows but its labels have 3"):
        calc.get_accuracy(x, x_labels[:3])
    with pytest.raises(ValueError, match="2D"):
        calc.get_accuracy(x[:, 0], x_labels)
    with pytest.raises(ValueError, match="multi-level labels need a label_comparison_fn"):
        calc.get_accuracy(x, torch.stack([x_labels, x_labels], 1))
    with pytest.raises(ValueError, match="NaN or inf"):
        calc.get_accuracy(column([0, float("nan"), 2, 3]), x_labels)
    with pytest.raises(ValueError, match="reference_labels must be given"):
        calc.get_accuracy(x, x_labels, x)
    with pytest.raises(ValueError, match="first len\\(query\\) rows of reference"):
        calc.get_accuracy(x[2:], x_labels[2:], x, x_labels, ref_includes_query=True)
    with pytest.raises(ValueError, match="embedding size 1 but reference has 2"):
        calc.get_accuracy(x, x_labels, torch.cat([x, x], 1), x_labels)
    with pytest.raises(ValueError, match="nothing to search"):
        calc.get_accuracy(x[:1], x_labels[:1])
    with pytest.raises(ValueError, match="NMI and AMI need 1D labels"):
        calculator(include=("NMI",), label_comparison_fn=torch.eq).get_accuracy(
            x, torch.stack([x_labels] * 2, 1)
        )
