"""AccuracyCalculator behaves as PML 2.9.0 documents it: inputs and their casting, the documented
extension (calculate_<name> + requires_knn/requires_clustering), the keyword arguments every
calculate_* receives, the module functions, include/exclude, logging and errors. Each test runs
the same call on PML and on ours."""

import inspect
import logging

import numpy as np
import pytest
import torch

from metric_runner.utils import accuracy_calculator as ours_module
from metric_runner.utils import common_functions as c_f
from metric_runner.utils.accuracy_calculator import AccuracyCalculator

pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning.utils import accuracy_calculator as pml_module  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_threaded_faiss")

CPU = torch.device("cpu")
DOCUMENTED_KWARGS = {
    "query",
    "reference",
    "query_labels",
    "reference_labels",
    "ref_includes_query",
    "label_counts",
    "knn_labels",
    "knn_distances",
    "lone_query_labels",
    "not_lone_query_mask",
    "cluster_labels",
}
KNN_METRICS = (
    "mean_average_precision",
    "mean_average_precision_at_r",
    "mean_reciprocal_rank",
    "precision_at_1",
    "r_precision",
)


def both(module, **kwargs):
    return module.AccuracyCalculator(device=CPU, **kwargs)


def clustered(num_classes=5, per_class=8, dim=6, seed=0, spread=0.8, lone=1):
    """Class-structured embeddings with `lone` extra classes of a single sample."""
    rng = np.random.RandomState(seed)
    labels = np.concatenate(
        [np.repeat(np.arange(num_classes), per_class), num_classes + np.arange(lone)]
    )
    centers = rng.randn(num_classes + lone, dim) * 3
    x = centers[labels] + spread * rng.randn(len(labels), dim)
    return torch.from_numpy(x).float(), torch.from_numpy(labels)


def assert_same_accuracies(ours, theirs, tol=1e-6):
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        np.testing.assert_allclose(ours[name], value, rtol=tol, atol=tol, err_msg=name)


# ---------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.int16, torch.uint8, torch.float16, torch.float64]
)
@pytest.mark.parametrize("as_numpy", [False, True], ids=["torch", "numpy"])
def test_any_embedding_dtype_as_torch_or_numpy_gives_pmls_accuracies(dtype, as_numpy):
    x, labels = clustered(seed=1)
    x = (x * 4 + 20).clamp(0, 255).to(dtype)  # uint8-safe range; integers make exact ties
    ref, ref_labels = x[5:], labels[5:]
    inputs = [x, labels, ref, ref_labels]
    if as_numpy:
        inputs = [t.numpy() for t in inputs]
    kwargs = dict(exclude=("NMI", "AMI"), k=7)
    assert_same_accuracies(
        both(ours_module, **kwargs).get_accuracy(*inputs),
        both(pml_module, **kwargs).get_accuracy(*inputs),
    )


def test_large_integer_embeddings_do_not_overflow_in_the_ranking():
    # Squared distances of int64 embeddings near 2**40 overflow int64; PML casts to float32.
    x = torch.tensor([[2**40, 0], [2**40 + 2**30, 0], [0, 2**40], [2**30, 2**40]])
    labels = torch.tensor([0, 0, 1, 1])
    kwargs = dict(include=("precision_at_1", "r_precision", "mean_average_precision"))
    ours = both(ours_module, **kwargs).get_accuracy(x, labels)
    assert ours == both(pml_module, **kwargs).get_accuracy(x, labels)
    assert ours == {"precision_at_1": 1.0, "r_precision": 1.0, "mean_average_precision": 1.0}


class Spy:
    """A calculate_ method that records the keyword arguments it receives."""

    def __init__(self):
        self.kwargs = None

    def __call__(self, **kwargs):
        self.kwargs = kwargs
        return 0


def spying_calculator(module, **kwargs):
    knn_spy, clustering_spy = Spy(), Spy()

    class Spying(module.AccuracyCalculator):
        def calculate_knn_spy(self, **kwargs):
            return knn_spy(**kwargs)

        def calculate_clustering_spy(self, **kwargs):
            return clustering_spy(**kwargs)

        def requires_knn(self):
            return super().requires_knn() + ["knn_spy"]

        def requires_clustering(self):
            return super().requires_clustering() + ["clustering_spy"]

    return Spying(device=CPU, **kwargs), knn_spy, clustering_spy


@pytest.mark.parametrize("setup", ["self", "separate", "includes_query"])
def test_calculate_methods_receive_pmls_keyword_arguments(setup):
    x, labels = clustered(seed=2)
    args = {
        "self": (x, labels),
        "separate": (x[:20], labels[:20], x[20:], labels[20:], False),
        "includes_query": (x[:20], labels[:20], x, labels, True),
    }[setup]
    received = {}
    for name, module in [("ours", ours_module), ("pml", pml_module)]:
        calc, knn_spy, clustering_spy = spying_calculator(module, k=5)
        calc.get_accuracy(*args, include=("knn_spy", "clustering_spy"))
        assert DOCUMENTED_KWARGS <= set(knn_spy.kwargs), name
        assert DOCUMENTED_KWARGS <= set(clustering_spy.kwargs), name
        received[name] = knn_spy.kwargs
    ours, theirs = received["ours"], received["pml"]
    assert ours["query"].dtype == theirs["query"].dtype == torch.float32
    for key in ("knn_labels", "query_labels", "reference_labels"):
        # PML hands labels over as float32 (distinct labels above 2**24 would merge); ours keep
        # their integer type, with the same values.
        torch.testing.assert_close(ours[key].float(), theirs[key])
    # squared L2 from faiss (PML) and from our matmul: float32 rounding apart
    torch.testing.assert_close(ours["knn_distances"], theirs["knn_distances"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours["label_counts"][0].float(), theirs["label_counts"][0])
    torch.testing.assert_close(ours["label_counts"][1], theirs["label_counts"][1])
    torch.testing.assert_close(ours["lone_query_labels"].float(), theirs["lone_query_labels"])
    assert torch.equal(ours["not_lone_query_mask"], theirs["not_lone_query_mask"])
    assert ours["ref_includes_query"] == theirs["ref_includes_query"]
    assert ours["label_comparison_fn"] is theirs["label_comparison_fn"] is torch.eq


def test_builtin_metrics_receive_the_same_keyword_arguments_through_get_accuracy():
    # _get_accuracy(function_dict, **kwargs) is where PML calls every calculate_ method.
    seen = {}
    for name, module in [("ours", ours_module), ("pml", pml_module)]:

        class Recording(module.AccuracyCalculator):
            def _get_accuracy(self, function_dict, name=name, **kwargs):
                seen[name] = set(kwargs)
                return super()._get_accuracy(function_dict, **kwargs)

        x, labels = clustered(seed=3)
        Recording(device=CPU).get_accuracy(x, labels)
    assert DOCUMENTED_KWARGS <= seen["ours"] and DOCUMENTED_KWARGS <= seen["pml"]


# ---------------------------------------------------------------- the documented extension


def documented_subclass(module):
    """The custom calculator of PML's AccuracyCalculator docs, word for word but the module."""

    class YourCalculator(module.AccuracyCalculator):
        def calculate_precision_at_2(self, knn_labels, query_labels, **kwargs):
            return module.precision_at_k(
                knn_labels,
                query_labels[:, None],
                2,
                self.avg_of_avgs,
                self.return_per_class,
                self.label_comparison_fn,
            )

        def calculate_fancy_mutual_info(self, query_labels, cluster_labels, **kwargs):
            return len(torch.unique(cluster_labels)) / len(torch.unique(query_labels))

        def requires_clustering(self):
            return super().requires_clustering() + ["fancy_mutual_info"]

        def requires_knn(self):
            return super().requires_knn() + ["precision_at_2"]

    return YourCalculator


@pytest.mark.parametrize("k", [None, 4, "max_bin_count"])
@pytest.mark.parametrize("options", [{}, {"avg_of_avgs": True}, {"return_per_class": True}])
def test_documented_custom_metrics_work_unchanged(k, options):
    x, labels = clustered(seed=4, lone=0)
    results = [
        documented_subclass(module)(device=CPU, k=k, **options).get_accuracy(x, labels)
        for module in (ours_module, pml_module)
    ]
    assert {"precision_at_2", "fancy_mutual_info"} <= set(results[0])
    assert_same_accuracies(*results, tol=1e-5)


def test_builtin_calculate_methods_can_be_called_with_knn_labels():
    # As PML's own tests and users' overrides do: values from knn_labels, lone queries dropped.
    knn_labels = torch.tensor([[0, 1, 0, 0], [1, 0, 1, 1], [2, 2, 0, 1], [9, 0, 0, 1]])
    query_labels = torch.tensor([0, 1, 2, 9])
    reference_labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    not_lone = torch.tensor([True, True, True, False])
    label_counts = pml_module.get_label_match_counts(query_labels, reference_labels, torch.eq)
    kwargs = dict(
        knn_labels=knn_labels,
        query_labels=query_labels,
        not_lone_query_mask=not_lone,
        label_counts=label_counts,
        ref_includes_query=False,
    )
    for options in [{}, {"return_per_class": True}, {"avg_of_avgs": True}]:
        ours = both(ours_module, **options)
        theirs = both(pml_module, **options)
        for metric in KNN_METRICS:
            method = "calculate_" + metric
            np.testing.assert_allclose(
                getattr(ours, method)(**kwargs), getattr(theirs, method)(**kwargs), err_msg=metric
            )


# ---------------------------------------------------------------- module functions

MODULE_FUNCTIONS = [
    "precision_at_k",
    "mean_average_precision",
    "r_precision",
    "mean_reciprocal_rank",
    "get_label_match_counts",
    "get_lone_query_labels",
    "get_relevance_mask",
    "get_unique_labels",
    "maybe_get_avg_of_avgs",
    "nan_accuracy",
    "try_getting_not_lone_labels",
]


@pytest.mark.parametrize("name", MODULE_FUNCTIONS)
def test_module_functions_have_pmls_signatures(name):
    ours = inspect.signature(getattr(ours_module, name))
    theirs = inspect.signature(getattr(pml_module, name))
    assert ours == theirs


@pytest.mark.parametrize("metric", [*KNN_METRICS, "NMI", "AMI"])
def test_calculate_methods_have_pmls_signatures_and_names(metric):
    # Subclasses override them and call super() with PML's positional order.
    ours = getattr(AccuracyCalculator, "calculate_" + metric)
    theirs = getattr(pml_module.AccuracyCalculator, "calculate_" + metric)
    assert inspect.signature(ours) == inspect.signature(theirs)
    assert ours.__qualname__ == theirs.__qualname__


def test_equality_and_get_accuracy_hook():
    assert ours_module.EQUALITY is pml_module.EQUALITY is torch.eq
    assert inspect.signature(AccuracyCalculator._get_accuracy) == inspect.signature(
        pml_module.AccuracyCalculator._get_accuracy
    )


def random_knn_problem(seed, ref_includes_query):
    generator = torch.Generator().manual_seed(seed)
    reference_labels = torch.randint(0, 6, (60,), generator=generator)
    query_labels = (
        reference_labels[:25]
        if ref_includes_query
        else torch.randint(0, 6, (25,), generator=generator)
    )
    knn_labels = reference_labels[torch.randint(0, 60, (25, 9), generator=generator)]
    return knn_labels, query_labels, reference_labels


@pytest.mark.parametrize("ref_includes_query", [False, True])
@pytest.mark.parametrize("averaging", [(False, False), (True, False), (False, True)])
def test_module_metric_functions_give_pmls_values(ref_includes_query, averaging):
    knn_labels, query_labels, reference_labels = random_knn_problem(7, ref_includes_query)
    gt = query_labels[:, None]
    for module in (ours_module, pml_module):
        module.counts = module.get_label_match_counts(query_labels, reference_labels, torch.eq)
    values = {}
    for module in (ours_module, pml_module):
        counts = module.counts
        values[module] = [
            module.precision_at_k(knn_labels, gt, 3, *averaging, torch.eq),
            module.mean_reciprocal_rank(knn_labels, gt, *averaging, torch.eq),
            module.r_precision(knn_labels, gt, ref_includes_query, counts, *averaging, torch.eq),
            module.mean_average_precision(
                knn_labels, gt, ref_includes_query, counts, *averaging, torch.eq
            ),
            module.mean_average_precision(
                knn_labels, gt, ref_includes_query, counts, *averaging, torch.eq, at_r=True
            ),
        ]
        del module.counts
    # PML computes mean_reciprocal_rank in float32, ours in float64
    np.testing.assert_allclose(values[ours_module], values[pml_module], rtol=1e-6)


def test_label_count_helpers_give_pmls_values():
    query_labels = torch.tensor([3, 1, 3, 7, 5, 5])
    reference_labels = torch.tensor([1, 3, 3, 5, 8, 1, 5])
    for ref_includes_query in (False, True):
        results = []
        for module in (ours_module, pml_module):
            counts = module.get_label_match_counts(query_labels, reference_labels, torch.eq)
            lone = module.get_lone_query_labels(query_labels, counts, ref_includes_query, torch.eq)
            # (label 7, absent from the reference, is lone: PML never asks for its mask)
            in_reference = query_labels != 7
            mask = module.get_relevance_mask(
                (5, 4), query_labels[in_reference, None], ref_includes_query, counts
            )
            results.append((*counts, *lone, *mask))
        for ours, theirs in zip(*results):
            assert torch.equal(ours, theirs)
    # Two-level labels with a custom comparison (same first level).
    same_first = lambda x, y: x[..., 0] == y[..., 0]  # noqa: E731
    query = torch.tensor([[0, 1], [0, 2], [4, 4]])
    reference = torch.tensor([[0, 1], [0, 5], [1, 1]])
    ours = ours_module.get_label_match_counts(query, reference, same_first)
    theirs = pml_module.get_label_match_counts(query, reference, same_first)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_averaging_helpers_give_pmls_values():
    values = torch.tensor([1.0, 0.0, 0.5, 0.25], dtype=torch.float64)
    labels = torch.tensor([[2], [0], [2], [1]])
    for options in [(False, False), (True, False), (False, True)]:
        assert ours_module.maybe_get_avg_of_avgs(values, labels, *options) == pytest.approx(
            pml_module.maybe_get_avg_of_avgs(values, labels, *options)
        )
    for per_class in (False, True):
        ours = ours_module.nan_accuracy(torch.tensor([0, 1]), per_class)
        theirs = pml_module.nan_accuracy(torch.tensor([0, 1]), per_class)
        np.testing.assert_array_equal(ours, theirs)
    knn, query = torch.tensor([[0, 1], [1, 1], [2, 0]]), torch.tensor([0, 1, 2])
    mask = torch.tensor([True, False, True])
    for ours, theirs in zip(
        ours_module.try_getting_not_lone_labels(knn, query, mask),
        pml_module.try_getting_not_lone_labels(knn, query, mask),
    ):
        assert torch.equal(ours, theirs)
    assert ours_module.try_getting_not_lone_labels(knn, query, ~mask & False) == (None, None)
    multi = torch.tensor([[3, 1], [0, 1], [3, 1]])
    assert torch.equal(ours_module.get_unique_labels(multi), pml_module.get_unique_labels(multi))


# ---------------------------------------------------------------- include / exclude


def test_function_dict_and_get_accuracy_apply_the_constructors_selection_first():
    x, labels = clustered(seed=5)
    for kwargs in [{"include": ("precision_at_1", "NMI", "AMI")}, {"exclude": ("NMI",)}]:
        ours, theirs = both(ours_module, **kwargs), both(pml_module, **kwargs)
        assert list(ours.get_function_dict()) == list(theirs.get_function_dict())
        assert ours.get_curr_metrics() == theirs.get_curr_metrics()
        for narrowed in [("NMI",), ("AMI", "r_precision"), ("r_precision",), ("foo",)]:
            assert list(ours.get_function_dict(include=narrowed)) == list(
                theirs.get_function_dict(include=narrowed)
            )
            assert list(ours.get_function_dict(exclude=narrowed)) == list(
                theirs.get_function_dict(exclude=narrowed)
            )
        knn_only = ("precision_at_1", "r_precision")
        assert_same_accuracies(
            ours.get_accuracy(x, labels, include=knn_only),
            theirs.get_accuracy(x, labels, include=knn_only),
        )


def test_check_primary_metrics_accepts_and_rejects_as_pml():
    ours, theirs = (
        both(ours_module, include=("precision_at_1", "NMI")),
        both(pml_module, include=("precision_at_1", "NMI")),
    )
    assert AccuracyCalculator.check_primary_metrics(ours, include=("NMI",)) is None
    for bad in [{"include": ("AMI",)}, {"exclude": ("r_precision",)}]:
        with pytest.raises(ValueError):
            pml_module.AccuracyCalculator.check_primary_metrics(theirs, **bad)
        with pytest.raises(ValueError, match="primary metrics must be one or more of"):
            AccuracyCalculator.check_primary_metrics(ours, **bad)


# ---------------------------------------------------------------- logging and errors


def info_messages(caplog, logger_name, run):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=logger_name):
        run()
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == logger_name and r.levelno == logging.INFO
    ]


@pytest.mark.parametrize("setup", ["self", "separate", "includes_query"])
def test_knn_and_kmeans_log_pmls_info_lines(caplog, setup):
    x, labels = clustered(seed=6)
    args = {
        "self": (x, labels),
        "separate": (x[:20], labels[:20], x[20:], labels[20:], False),
        "includes_query": (x[:20], labels[:20], x, labels, True),
    }[setup]
    for k in (None, 3):
        ours = info_messages(
            caplog, c_f.LOGGER.name, lambda k=k: both(ours_module, k=k).get_accuracy(*args)
        )
        theirs = info_messages(caplog, "PML", lambda k=k: both(pml_module, k=k).get_accuracy(*args))
        assert sorted(ours) == sorted(theirs) and len(ours) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"avg_of_avgs": True, "return_per_class": True},
        {"k": 0},
        {"k": "all"},
        {"k": 1.5},
        {"include": ("precision_at_5",)},
        {"exclude": ("nmi",)},
    ],
)
def test_construction_errors_are_catchable_as_pmls_and_as_assertion_error(kwargs):
    with pytest.raises(ValueError):
        pml_module.AccuracyCalculator(**kwargs)
    with pytest.raises(ValueError) as error:
        AccuracyCalculator(**kwargs)
    assert isinstance(error.value, AssertionError)


@pytest.mark.parametrize("include", [(), ("NMI",), ("AMI", "precision_at_1")])
def test_clustering_with_a_custom_label_comparison_is_not_implemented_as_in_pml(include):
    def first_level(x, y):
        return x[..., 0] == y[..., 0]

    with pytest.raises(NotImplementedError):
        pml_module.AccuracyCalculator(include=include, label_comparison_fn=first_level)
    with pytest.raises(NotImplementedError, match="exclude=\\('NMI', 'AMI'\\)") as error:
        AccuracyCalculator(include=include, label_comparison_fn=first_level)
    assert isinstance(error.value, ValueError)
    # Without the clustering metrics (or with PML's default comparison) it is accepted.
    AccuracyCalculator(exclude=("NMI", "AMI"), label_comparison_fn=first_level)
    AccuracyCalculator(include=include, label_comparison_fn=torch.eq)
