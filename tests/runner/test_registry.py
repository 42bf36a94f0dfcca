import re

import pytest
import torch

import metric_runner.losses
from metric_runner import distances, losses, reducers
from metric_runner.runner import register_loss
from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import check_config
from metric_runner.runner.registry import (
    REGISTRIES,
    ConfigError,
    Registry,
    constructor_parameters,
    listing,
    parse,
    snake_case,
)
from metric_runner.samplers import MPerClassSampler


class UserLoss(torch.nn.Module):
    """A user's class, reachable by `_target_` only."""

    def __init__(self, scale, distance=None):
        super().__init__()
        self.scale = scale
        self.distance = distance


class AnnotatedLoss(torch.nn.Module):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale


class Base:
    def __init__(self, fixed, shared=1, **kwargs):
        self.fixed, self.shared = fixed, shared


class Child(Base):
    def __init__(self, own=2, **kwargs):
        super().__init__(fixed=True, **kwargs)
        self.own = own


def test_block_builds_nested_components_recursively():
    spec = parse(
        "loss",
        {
            "name": "TripletMarginLoss",
            "margin": 0.3,
            "distance": {"name": "LpDistance", "p": 1, "normalize_embeddings": False},
            "reducer": "MeanReducer",
        },
    )
    loss = spec.build()
    assert isinstance(loss, losses.TripletMarginLoss)
    assert loss.margin == 0.3
    assert isinstance(loss.distance, distances.LpDistance)
    assert loss.distance.p == 1 and loss.distance.normalize_embeddings is False
    assert isinstance(loss.reducer, reducers.MeanReducer)


def test_strings_name_shipped_yamls_then_registered_names_in_snake_case():
    triplet = parse("loss", "triplet_margin").build()  # conf/loss/triplet_margin.yaml
    assert isinstance(triplet, losses.TripletMarginLoss) and triplet.margin == 0.05
    distance = parse("distance", "cosine_similarity").build()
    assert isinstance(distance, distances.CosineSimilarity)
    assert snake_case("NTXentLoss") == "nt_xent_loss"
    assert snake_case("MPerClassSampler") == "m_per_class_sampler"


def test_target_builds_a_user_class_with_nested_registered_parts():
    spec = parse(
        "loss",
        {
            "_target_": f"{__name__}.UserLoss",
            "scale": 3,
            "distance": {"name": "LpDistance", "p": 1},
        },
    )
    loss = spec.build()
    assert isinstance(loss, UserLoss) and loss.scale == 3
    assert isinstance(loss.distance, distances.LpDistance) and loss.distance.p == 1


def test_decorator_registers_a_user_component():
    @register_loss("MyTestLoss")
    class MyTestLoss(UserLoss):
        pass

    try:
        assert isinstance(parse("loss", {"name": "MyTestLoss", "scale": 2}).build(), MyTestLoss)
        assert "MyTestLoss(scale, distance=None)" in listing(["losses"])
    finally:
        del REGISTRIES["loss"].registered["MyTestLoss"]


def test_a_class_exported_by_a_package_is_registered_without_editing_the_registry(monkeypatch):
    FreshLoss = type("FreshLoss", (UserLoss,), {"__module__": "metric_runner.losses.fresh_loss"})
    monkeypatch.setattr(metric_runner.losses, "FreshLoss", FreshLoss, raising=False)
    assert REGISTRIES["loss"].get("FreshLoss", "loss") is FreshLoss
    assert REGISTRIES["loss"].get("fresh_loss", "loss") is FreshLoss


def test_registries_hold_components_not_bases_or_unbuildable_classes():
    assert "TripletMarginLoss" in REGISTRIES["loss"].classes()
    assert "BaseMetricLossFunction" not in REGISTRIES["loss"].classes()
    assert "GenericPairLoss" not in REGISTRIES["loss"].classes()
    assert "EmbeddingRegularizerMixin" not in REGISTRIES["loss"].classes()
    assert REGISTRIES["sampler"].classes()["MPerClassSampler"] is MPerClassSampler
    assert {"Adam", "AdamW", "SGD"} <= set(REGISTRIES["optimizer"].classes())
    assert "LBFGS" not in REGISTRIES["optimizer"].classes()
    schedulers = REGISTRIES["scheduler"].classes()
    assert "CosineAnnealingLR" in schedulers and "LambdaLR" not in schedulers
    assert "LRScheduler" not in schedulers
    assert "KNNTester" in REGISTRIES["tester"].classes()


def test_unknown_name_names_it_and_suggests_the_closest():
    with pytest.raises(ConfigError) as error:
        parse("loss", {"name": "TripletMarginLos"})
    message = str(error.value)
    assert "'TripletMarginLos'" in message and "did you mean TripletMarginLoss" in message
    assert "\n" not in message


def test_unknown_nested_name_says_where():
    with pytest.raises(ConfigError, match=r"loss\.distance: unknown distance 'Cosine'"):
        parse("loss", {"name": "TripletMarginLoss", "distance": "Cosine"})


def test_unknown_argument_names_it_and_suggests_the_closest():
    with pytest.raises(ConfigError) as error:
        parse("loss", {"name": "TripletMarginLoss", "margn": 0.1})
    message = str(error.value)
    assert "TripletMarginLoss has no argument 'margn'" in message
    assert "did you mean margin" in message


def test_missing_required_argument_unless_the_runner_provides_it():
    with pytest.raises(ConfigError, match="ClassWeightedReducer needs argument 'weights'"):
        parse("reducer", {"name": "ClassWeightedReducer"})
    labels = torch.arange(4).repeat_interleave(8)
    spec = parse("sampler", {"name": "MPerClassSampler", "m": 4}, provided=("labels",))
    sampler = spec.build(labels=labels, batch_size=8, length_before_new_iter=32)
    assert len(sampler) == 32 and sampler.batch_size == 8


def test_context_fills_only_what_the_block_leaves_out_or_null():
    spec = parse(
        "sampler", {"name": "MPerClassSampler", "m": 2, "batch_size": None}, provided=("labels",)
    )
    labels = torch.arange(4).repeat_interleave(8)
    sampler = spec.build(labels=labels, batch_size=4, length_before_new_iter=16, unused=1)
    assert sampler.batch_size == 4 and len(sampler) == 16
    fixed = parse(
        "sampler", {"name": "MPerClassSampler", "m": 2, "batch_size": 8}, provided=("labels",)
    )
    assert fixed.build(labels=labels, batch_size=4, length_before_new_iter=16).batch_size == 8


def test_constructor_errors_become_one_config_line():
    spec = parse(
        "sampler", {"name": "MPerClassSampler", "m": 3, "batch_size": 8}, provided=("labels",)
    )
    with pytest.raises(ConfigError, match=r"^sampler \(MPerClassSampler\): batch_size \(8\)"):
        spec.build(labels=torch.arange(4).repeat_interleave(8), length_before_new_iter=16)


def test_constructor_parameters_follow_kwargs_and_skip_what_a_subclass_fixes():
    assert list(constructor_parameters(Child)) == ["own", "shared"]
    triplet = constructor_parameters(losses.TripletMarginLoss)
    assert {"margin", "distance", "reducer", "embedding_regularizer", "collect_stats"} <= set(
        triplet
    )
    assert "mat_based_loss" not in constructor_parameters(losses.ContrastiveLoss)


def test_listing_prints_components_with_arguments_defaults_and_configs():
    text = listing(["losses", "schedulers"])
    assert "losses:" in text and "schedulers:" in text and "miners:" not in text
    assert "TripletMarginLoss(margin=0.05, swap=False" in text
    assert "triplet" in next(line for line in text.splitlines() if "configs (loss=...)" in line)
    assert "CosineAnnealingLR(optimizer, T_max, eta_min=0.0" in text


def argument_lists(text):
    """(class name, [argument, ...]) for every component line of a listing."""
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("  configs") and line.endswith(")"):
            name, _, arguments = line.strip()[:-1].partition("(")
            yield name, [a for a in re.split(r", (?![^(]*\))", arguments) if a]


def test_listing_follows_the_constructor_order_through_args_and_kwargs():
    text = listing()
    # CosFaceLoss(*args, margin=0.35, scale=64, **kwargs): *args carries the base's positional
    # arguments, so they come first, and its own defaults win over the base's (margin=4).
    assert "CosFaceLoss(num_classes, embedding_size, margin=0.35, scale=64, weight_reg" in text
    assert (
        "SubCenterArcFaceLoss(num_classes, embedding_size, margin=28.6, scale=64, sub_centers=3,"
        in text
    )
    # Required arguments after defaulted ones can only be keywords: marked as Python would.
    assert (
        "DeepAdversarialMetricLearning(metric_alone_epochs=0, g_alone_epochs=0, "
        "g_triplets_per_anchor=100, *, models, optimizers, batch_size, loss_funcs, dataset, "
        "mining_funcs=None" in text
    )
    for name, arguments in argument_lists(text):
        keyword_only = False
        seen_default = False
        for argument in arguments:
            keyword_only |= argument == "*"
            seen_default |= "=" in argument
            assert "=" in argument or not seen_default or keyword_only, (name, argument)


def test_listing_shows_defaults_as_a_user_writes_them():
    text = listing()
    assert " at 0x" not in text
    assert (
        "PerAnchorReducer(reducer=None, "
        "aggregation_func=metric_runner.reducers.per_anchor_reducer.aggregation_func, "
        "collect_stats=None)" in text
    )
    assert "Adam(params, lr=0.001, betas=(0.9, 0.999), eps=1e-08," in text


def test_listing_leaves_out_kinds_with_nothing_registered(monkeypatch):
    empty = Registry("widget", "widgets", ["metric_runner.no_such_package"])
    monkeypatch.setitem(REGISTRIES, "widget", empty)
    assert "widgets" not in listing()
    assert listing(["widgets"]) == "widgets: none registered"
    assert listing(["miner"]).splitlines()[0] == "miners:"
    lines = listing().splitlines()
    for line, next_line in zip(lines, [*lines[1:], ""]):
        assert line.startswith("  ") or (line.endswith(":") and next_line.startswith("  ")), line


def test_listing_of_an_unknown_kind_names_the_valid_kinds():
    with pytest.raises(ConfigError) as error:
        listing(["foo"])
    message = str(error.value)
    assert message.startswith("--list: no component kind 'foo' (kinds: datasets, ")
    for plural in ("losses", "miners", "samplers", "testers", "trainers"):
        assert plural in message
    assert "did you mean losses" in str(pytest.raises(ConfigError, listing, ["loses"]).value)


@pytest.mark.parametrize(
    ("kind", "block", "message"),
    [
        (
            "loss",
            {"name": "TripletMarginLoss", "margin": "abc"},
            "loss.margin: expected a number, like the default 0.05; got 'abc'",
        ),
        (
            "optimizer",
            {"name": "Adam", "lr": "abc"},
            "optimizer.lr: expected a number, like the default 0.001; got 'abc'",
        ),
        (
            "loss",
            {"name": "TripletMarginLoss", "swap": 1},
            "loss.swap: expected true or false, like the default False; got 1",
        ),
        (
            "loss",
            {"name": "TripletMarginLoss", "triplets_per_anchor": 0.5},
            "loss.triplets_per_anchor: expected a string or an integer, like the default 'all'",
        ),
        (
            "optimizer",
            {"name": "Adam", "betas": [0.9, "x"]},
            "optimizer.betas: expected a list of numbers, like the default (0.9, 0.999); "
            "got [0.9, 'x']",
        ),
        ("optimizer", {"name": "Adam", "betas": 0.9}, "optimizer.betas: expected a list of"),
        # Annotations win over defaults: `l: int`, `n_bins: int = None`.
        ("loss", {"name": "ManifoldLoss", "l": 2.5}, "loss.l: expected an integer; got 2.5"),
        (
            "loss",
            {"name": "HistogramLoss", "n_bins": "ten"},
            "loss.n_bins: expected an integer or null; got 'ten'",
        ),
        (
            "loss",
            {"name": "TripletMarginLoss", "margin": {"low": 0.1}},
            "loss.margin: expected a number",
        ),
        (
            "loss",
            {"name": "TripletMarginLoss", "margin": None},
            "loss.margin: expected a number, like the default 0.05; got null",
        ),
        (
            "loss",
            {"name": "TripletMarginLoss", "distance": {"name": "LpDistance", "p": "two"}},
            "loss.distance.p: expected a number, like the default 2; got 'two'",
        ),
    ],
)
def test_values_of_the_wrong_type_stop_at_the_check_in_one_line(kind, block, message):
    with pytest.raises(ConfigError) as error:
        parse(kind, block, provided=("params",))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_values_that_fit_their_argument_pass_the_check():
    loss = parse(
        "loss",
        {
            "name": "TripletMarginLoss",
            "margin": 1,  # an int where the default is a float
            "triplets_per_anchor": 5,  # a count where the default is "all"
            "distance": {"name": "CosineSimilarity"},  # a nested component
            "reducer": "MeanReducer",
            "collect_stats": True,  # a null default takes anything
        },
    ).build()
    assert loss.margin == 1 and loss.triplets_per_anchor == 5
    adam = {"name": "Adam", "lr": 1, "betas": [0.5, 0.6]}
    optimizer = parse("optimizer", adam, provided=("params",)).build(
        params=[torch.nn.Parameter(torch.zeros(2))]
    )
    assert tuple(optimizer.defaults["betas"]) == (0.5, 0.6)
    assert parse("loss", {"name": "HistogramLoss", "n_bins": None}).args == {"n_bins": None}
    assert parse("loss", {"name": "ManifoldLoss", "l": 3}).build().l == 3
    # What the runner fills in may be null in the block, whatever its type.
    spec = parse(
        "sampler",
        {"name": "MPerClassSampler", "m": 2, "batch_size": None},
        "x",
        ("labels", "batch_size"),
    )
    assert spec.args["batch_size"] is None


def test_a_user_class_is_checked_by_its_annotations():
    with pytest.raises(
        ConfigError, match=r"^loss\.scale: expected a number, like the default 1\.0; got 'x'$"
    ):
        parse("loss", {"_target_": f"{__name__}.AnnotatedLoss", "scale": "x"})
    assert parse("loss", {"_target_": f"{__name__}.AnnotatedLoss", "scale": 2}).build().scale == 2


def test_a_wrong_value_on_the_command_line_is_one_config_error():
    for override, message in (
        ("loss.margin=abc", "loss.margin: expected a number, like the default 0.05; got 'abc'"),
        ("optimizer.lr=abc", "optimizer.lr: expected a number, like the default 0.001; got 'abc'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_config(compose_config(["loss=triplet", override]))


@pytest.mark.parametrize(
    ("where", "block", "message"),
    [
        (
            "loss",
            {"name": "SelfSupervisedLoss", "loss": {"name": "NTXentLoss"}},
            "loss: SelfSupervisedLoss compares two views without labels",
        ),
        ("loss", {"name": "VICRegLoss"}, "loss: VICRegLoss compares two views without labels"),
        (
            "self_supervised.loss",
            {"name": "TripletMarginLoss"},
            "self_supervised.loss: TripletMarginLoss takes labels, but the self-supervised term",
        ),
        (
            "sampler",
            {"name": "TuplesToWeightsSampler"},
            "sampler: TuplesToWeightsSampler needs the model being trained and the dataset",
        ),
        (
            "tester",
            {"name": "GlobalEmbeddingSpaceTester"},
            "tester: GlobalEmbeddingSpaceTester has no evaluate(splits, epoch, trunk, embedder)",
        ),
    ],
)
def test_a_component_that_cannot_serve_its_slot_is_refused_at_the_check(where, block, message):
    kind = where.rsplit(".", 1)[-1]
    with pytest.raises(ConfigError) as error:
        parse(kind, block, where)
    assert str(error.value).startswith(message)


def test_an_alias_yaml_names_what_its_target_names():
    # conf/loss/triplet.yaml and conf/miner/multisimilarity.yaml are `defaults: [target, _self_]`
    # (what `loss=triplet` composes); a nested string (loss.loss=triplet) follows them too.
    for kind, alias, target in [
        ("loss", "triplet", "triplet_margin"),
        ("miner", "multisimilarity", "multi_similarity"),
    ]:
        assert parse(kind, alias) == parse(kind, target)
    wrapper = parse("loss", {"name": "CrossBatchMemory", "loss": "triplet", "embedding_size": 8})
    inner = wrapper.build().loss
    assert isinstance(inner, losses.TripletMarginLoss) and inner.margin == 0.05


def test_components_that_serve_their_slot_pass_and_other_places_are_not_slots():
    assert parse("loss", "triplet").cls is losses.TripletMarginLoss
    assert parse("loss", {"name": "VICRegLoss"}, "self_supervised.loss").cls is losses.VICRegLoss
    two_views = {"name": "SelfSupervisedLoss", "loss": {"name": "NTXentLoss"}}
    assert parse("loss", two_views, "self_supervised.loss").cls is losses.SelfSupervisedLoss
    assert parse("tester", "knn").cls.__name__ == "KNNTester"
    assert parse("sampler", "m_per_class", provided=("labels",)).cls is MPerClassSampler
    # A wrapper's inner loss is not the training loss slot.
    wrapper = {"name": "MultipleLosses", "losses": [{"name": "TripletMarginLoss"}]}
    assert parse("loss", wrapper).args["losses"][0].cls is losses.TripletMarginLoss


def test_the_slot_check_runs_inside_check_config():
    with pytest.raises(ConfigError, match="^tester: GlobalEmbeddingSpaceTester has no evaluate"):
        check_config(compose_config(["tester.name=GlobalEmbeddingSpaceTester"]))
