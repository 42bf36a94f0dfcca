"""The configs cover the library: every registered loss, miner, sampler and tester has a YAML in
its group, named after its module, that fills the runner's slot; the exceptions are written
down with their reasons. The paths and debug groups hold what they promise."""

import pytest
import torch
from omegaconf import OmegaConf

from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import LOSS_CONTEXT
from metric_runner.runner.help import root_defaults
from metric_runner.runner.registry import CONF_DIR, REGISTRIES, ConfigError, parse

# What the runner fills in for each slot (see components.check_config).
PROVIDED = {
    "loss": LOSS_CONTEXT,
    "miner": (),
    "sampler": ("labels", "batch_size", "length_before_new_iter"),
    "tester": ("data_device",),
}
GROUPS = tuple(PROVIDED)

# Registered components with no YAML in their group, and why.
NO_CONFIG = {
    "VICRegLoss": "compares two views without labels, so it cannot be the training loss; "
    "it belongs in self_supervised.loss",
    "SelfSupervisedLoss": "two views without labels: the self_supervised group (simclr) uses it",
    "TuplesToWeightsSampler": "needs the model being trained and the dataset, which the runner "
    "does not give a sampler",
    "GlobalEmbeddingSpaceTester": "PML's test(...) API without evaluate(), the runner's call; "
    "KNNTester (tester=knn) is the runner's tester",
    "GlobalTwoStreamEmbeddingSpaceTester": "PML's test(...) API, and two-stream (anchor, "
    "positive) datasets the runner does not load",
    "WithSameParentLabelTester": "PML's test(...) API without evaluate()",
}
# YAMLs not named after their module, and why.
OTHER_NAMES = {
    "SignalToNoiseRatioContrastiveLoss": "its module signal_to_noise_ratio_losses holds "
    "several classes",
}
SUFFIXES = ("_loss", "_miner", "_sampler", "_tester")


@pytest.fixture(scope="module")
def shipped_blocks():
    """{group: {option: its composed block}}, composed once for the module."""
    return {
        group: {
            path.stem: compose_config([f"{group}={path.stem}"])[group]
            for path in sorted((CONF_DIR / group).glob("*.yaml"))
        }
        for group in GROUPS
    }


@pytest.fixture(scope="module")
def shipped_classes(shipped_blocks):
    """{group: {option: the registered class its block names}}."""
    return {
        group: {
            option: REGISTRIES[group].get(block.name, group) for option, block in blocks.items()
        }
        for group, blocks in shipped_blocks.items()
    }


def module_name(cls):
    name = cls.__module__.rsplit(".", 1)[1]
    for suffix in SUFFIXES:
        name = name.removesuffix(suffix)
    return name


@pytest.mark.parametrize("group", GROUPS)
def test_every_registered_component_has_a_config_or_a_written_reason(group, shipped_classes):
    covered = set(shipped_classes[group].values())
    missing = [
        name
        for name, cls in REGISTRIES[group].classes().items()
        if cls not in covered and name not in NO_CONFIG
    ]
    assert missing == [], f"conf/{group}/ has no YAML for {missing}"


@pytest.mark.parametrize("group", GROUPS)
def test_the_config_of_a_component_is_named_after_its_module(group, shipped_classes):
    options = shipped_classes[group]
    for name, cls in REGISTRIES[group].classes().items():
        if name in NO_CONFIG or name in OTHER_NAMES:
            continue
        assert options.get(module_name(cls)) is cls, f"conf/{group}/{module_name(cls)}.yaml"


@pytest.mark.parametrize("group", GROUPS)
def test_every_shipped_config_fills_its_slot(group, shipped_blocks):
    """No YAML ships a component that the config check refuses (VICRegLoss as the loss...)."""
    refused = []
    for option, block in shipped_blocks[group].items():
        try:
            parse(group, block, provided=PROVIDED[group])
        except ConfigError as error:
            refused.append(f"conf/{group}/{option}.yaml: {error}")
    assert refused == []


def test_the_components_without_config_are_refused_in_their_slot():
    for name, reason in NO_CONFIG.items():
        group = next(g for g in GROUPS if name in REGISTRIES[g].classes())
        with pytest.raises(ConfigError, match=f"^{group}: {name} "):
            parse(group, {"name": name}, provided=PROVIDED[group])
        assert reason


def test_fixed_set_of_triplets_config_yields_whole_triplets():
    torch.manual_seed(0)
    labels = torch.arange(6).repeat_interleave(5)
    block = compose_config(["sampler=fixed_set_of_triplets"]).sampler
    sampler = parse("sampler", block, provided=PROVIDED["sampler"]).build(labels=labels)
    triplets = torch.tensor(list(sampler)).view(-1, 3)
    assert len(triplets) == block.num_triplets
    anchor, positive, negative = labels[triplets].T
    assert torch.equal(anchor, positive) and bool((anchor != negative).all())


def test_hierarchical_config_fills_batches_from_two_super_classes():
    torch.manual_seed(0)
    classes = torch.arange(12).repeat_interleave(8)
    labels = torch.stack([classes, classes // 3], dim=1)  # 4 super classes of 3 classes
    block = compose_config(["sampler=hierarchical"]).sampler
    spec = parse("sampler", block, provided=PROVIDED["sampler"])
    sampler = spec.build(labels=labels, batch_size=24, length_before_new_iter=len(labels))
    batches = list(sampler)
    assert len(batches) == 6 * block.batches_per_super_tuple  # one per pair of super classes
    for batch in batches:
        batch_labels = labels[torch.tensor(batch)]
        assert len(batch) == 24
        assert len(batch_labels[:, 1].unique()) == block.super_classes_per_batch
        _, per_class = batch_labels[:, 0].unique(return_counts=True)
        assert bool((per_class == block.samples_per_class).all())


def group_override(group, option):
    """`group=option`, or `+group=option` while the root defaults list does not name the
    group."""
    return f"{'' if group in root_defaults(CONF_DIR) else '+'}{group}={option}"


def test_paths_roots_follow_the_environment_and_the_command_line(monkeypatch, tmp_path):
    monkeypatch.delenv("METRIC_RUNNER_ROOT", raising=False)
    monkeypatch.delenv("METRIC_RUNNER_OUTPUT_DIR", raising=False)
    monkeypatch.delenv("METRIC_RUNNER_LOG_DIR", raising=False)
    monkeypatch.setenv("METRIC_RUNNER_DATA_DIR", str(tmp_path / "datasets"))
    cfg = compose_config([group_override("paths", "default"), "paths.root_dir=/work/r"])
    assert OmegaConf.to_container(cfg.paths, resolve=True) == {
        "root_dir": "/work/r",
        "data_dir": str(tmp_path / "datasets"),
        "output_dir": "/work/r/runs",
        "log_dir": "/work/r/multirun",
    }
    monkeypatch.setenv("METRIC_RUNNER_OUTPUT_DIR", "/scratch/runs")
    assert cfg.paths.output_dir == "/scratch/runs"


def test_debug_fast_is_one_epoch_of_two_batches_without_checkpoints():
    default = compose_config()
    cfg = compose_config([group_override("debug", "fast")])
    assert (cfg.epochs, cfg.max_batches_per_epoch, cfg.save_checkpoints) == (1, 2, False)
    assert cfg.eval_every == 1 and cfg.early_stopping.patience is None
    # Everything else is the run it checks.
    for key in ("dataset", "model", "loss", "miner", "optimizer", "batch_size", "seed"):
        assert cfg[key] == default[key]
