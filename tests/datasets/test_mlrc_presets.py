"""conf/experiment/mlrc_<dataset>_<loss>.yaml: every preset composes and checks, with the MLRC
protocol and the paper's published hyperparameters."""

import sys

import pytest
import torch

from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import check_config
from metric_runner.runner.registry import CONF_DIR
from metric_runner.runner.train import warn_of_frozen_random_statistics
from tests.datasets.fixtures import class_colour, make_cub

DATASETS = ("cub", "cars196", "sop")
# The presets leave the data's folder to the user; checking a config needs some value.
UNSET_ROOT = "dataset.root=unused"
LOSSES = (
    "contrastive",
    "triplet",
    "ntxent",
    "proxy_nca",
    "cosface",
    "arcface",
    "multi_similarity",
    "multi_similarity_miner",
    "soft_triple",
)


def test_there_is_a_preset_per_dataset_and_loss():
    shipped = {p.stem for p in (CONF_DIR / "experiment").glob("mlrc_*.yaml")}
    assert shipped == {f"mlrc_{d}_{loss}" for d in DATASETS for loss in LOSSES}


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("loss", LOSSES)
def test_preset_follows_the_mlrc_protocol(dataset, loss):
    cfg = compose_config([f"experiment=mlrc_{dataset}_{loss}", UNSET_ROOT])
    specs = check_config(cfg)
    assert specs.dataset.args["val"] == "fold" and specs.dataset.args["num_folds"] == 4
    assert (cfg.batch_size, cfg.sampler.m) == (32, 4)
    assert (cfg.optimizer.name, cfg.optimizer.lr) == ("RMSprop", 1e-6)
    assert cfg.model.embedder.out_features == 128
    assert cfg.early_stopping.metric == "mean_average_precision_at_r"
    assert (cfg.get("miner") is not None) == (loss == "multi_similarity_miner")
    # The paper's trunk, BatchNorm statistics frozen, and the crop BN-Inception was trained on.
    assert specs.trunk.cls.__name__ == "BNInception" and cfg.trainer.freeze_trunk_batchnorm
    assert cfg.transform.crop_size == 227


def test_resnet50_is_one_override_away():
    cfg = compose_config(["experiment=mlrc_cars196_triplet", "model=resnet50", UNSET_ROOT])
    specs = check_config(cfg)
    assert (specs.trunk.cls.__name__, specs.trunk.args["arch"]) == ("TorchvisionTrunk", "resnet50")
    assert cfg.transform.crop_size == 224 and cfg.trainer.freeze_trunk_batchnorm


@pytest.mark.parametrize(
    ("dataset", "reg_weight"), [("cub", 0.3754), ("cars196", 0.0669), ("sop", 0)]
)
def test_soft_triple_presets_apply_the_published_center_regularizer(dataset, reg_weight):
    specs = check_config(compose_config([f"experiment=mlrc_{dataset}_soft_triple", UNSET_ROOT]))
    loss = specs.loss.build(num_classes=5, embedding_size=8)
    if reg_weight:
        assert type(loss.weight_regularizer).__name__ == "SparseCentersRegularizer"
        assert loss.weight_reg_weight == pytest.approx(reg_weight, rel=1e-9)
    else:
        assert loss.weight_regularizer is None


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("mlrc_cub_contrastive", {"loss.pos_margin": -0.2, "loss.neg_margin": 0.3841}),
        ("mlrc_sop_ntxent", {"loss.temperature": 0.0002}),
        ("mlrc_cars196_proxy_nca", {"loss.softmax_scale": 7.97, "loss_optimizer.lr": 4.43e-3}),
        ("mlrc_sop_arcface", {"loss.margin": 18.63, "loss.scale": 220.3}),
        ("mlrc_cars196_multi_similarity_miner", {"loss.alpha": 7.49, "miner.epsilon": 0.72}),
        ("mlrc_cub_soft_triple", {"loss.la": 78.02, "loss.gamma": 58.95, "loss.margin": 0.4307}),
    ],
)
def test_published_values(preset, expected):
    cfg = compose_config([f"experiment={preset}", UNSET_ROOT])
    for key, value in expected.items():
        section, name = key.split(".")
        assert cfg[section][name] == pytest.approx(value, rel=1e-9)


@pytest.mark.slow
def test_soft_triple_preset_trains_bn_inception_with_frozen_statistics(tmp_path, monkeypatch):
    """One epoch of the CUB SoftTriple preset through metric-run (2 folds, 32 px crops): the
    BN-Inception trunk trains while every batch-norm statistic stays at its initial value."""
    from metric_runner.runner import cli

    classes = [*range(1, 9), *range(101, 109)]
    make_cub(tmp_path / "cub", class_ids=classes, images_per_class=4, colour=class_colour)
    run_dir = tmp_path / "run"
    arguments = [
        "experiment=mlrc_cub_soft_triple",
        f"dataset.root={tmp_path / 'cub'}",
        "dataset.num_folds=2",
        "transform=tiny",
        "epochs=1",
        "batch_size=16",
        f"hydra.run.dir={run_dir}",
    ]
    monkeypatch.setattr(sys, "argv", ["metric-run", *arguments])
    cli.main()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    trunk = state["models"]["trunk"]
    means = [v for k, v in trunk.items() if k.endswith("running_mean")]
    variances = [v for k, v in trunk.items() if k.endswith("running_var")]
    assert len(means) == 69 and all(torch.all(m == 0) for m in means)
    assert all(torch.all(v == 1) for v in variances)
    assert state["epoch"] == 1 and state["loss"]["fc"].shape == (128, 4 * 10)


def test_a_preset_without_trunk_weights_warns_that_its_frozen_statistics_are_random(caplog):
    cfg = compose_config(["experiment=mlrc_cub_triplet", UNSET_ROOT])
    with caplog.at_level("WARNING", logger="metric_runner.runner.train"):
        warn_of_frozen_random_statistics(cfg)
    assert [r.getMessage() for r in caplog.records] == [
        "trainer.freeze_trunk_batchnorm=true but model.trunk.weights is not set: the trunk "
        "starts from random weights and its BatchNorm statistics stay random; give the "
        "ImageNet weights (model.trunk.weights=FILE) as the MLRC presets expect"
    ]
    caplog.clear()
    for overrides in (
        ["model.trunk.weights=bn_inception.pth"],
        ["trainer.freeze_trunk_batchnorm=false"],
    ):
        warn_of_frozen_random_statistics(
            compose_config(["experiment=mlrc_cub_triplet", UNSET_ROOT, *overrides])
        )
    warn_of_frozen_random_statistics(compose_config([]))  # the digits: no frozen statistics
    assert caplog.records == []
