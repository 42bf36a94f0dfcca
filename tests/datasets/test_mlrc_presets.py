"""conf/experiment/mlrc_<dataset>_<loss>.yaml: every preset composes and checks, with the MLRC
protocol and the paper's published hyperparameters."""

import pytest

from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import check_config
from metric_runner.runner.registry import CONF_DIR

DATASETS = ("cub", "cars196", "sop")
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
    cfg = compose_config([f"experiment=mlrc_{dataset}_{loss}"])
    specs = check_config(cfg)
    assert specs.dataset.args["val"] == "fold" and specs.dataset.args["num_folds"] == 4
    assert (cfg.batch_size, cfg.sampler.m) == (32, 4)
    assert (cfg.optimizer.name, cfg.optimizer.lr) == ("RMSprop", 1e-6)
    assert cfg.model.embedder.out_features == 128
    assert cfg.early_stopping.metric == "mean_average_precision_at_r"
    assert (cfg.get("miner") is not None) == (loss == "multi_similarity_miner")


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
    cfg = compose_config([f"experiment={preset}"])
    for key, value in expected.items():
        section, name = key.split(".")
        assert cfg[section][name] == pytest.approx(value, rel=1e-9)
