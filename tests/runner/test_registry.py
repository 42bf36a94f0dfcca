import pytest
import torch

import metric_runner.losses
from metric_runner import distances, losses, reducers
from metric_runner.runner import register_loss
from metric_runner.runner.registry import (
    REGISTRIES,
    ConfigError,
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
    triplet = parse("loss", "triplet").build()  # conf/loss/triplet.yaml
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
