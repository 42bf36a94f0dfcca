"""Every shipped YAML composes and builds through the registry, so no config can rot. The
cases are found by globbing conf/, so configs added later are covered automatically."""

import re

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from metric_runner.datasets import Digits
from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import (
    build_loss,
    build_model,
    build_self_supervised,
    check_config,
)
from metric_runner.runner.registry import CONF_DIR, REGISTRIES, ConfigError
from tests.datasets import fixtures

SHIPPED = sorted(
    (path.parent.name, path.stem)
    for path in CONF_DIR.glob("*/*.yaml")
    if path.parent.name != "hydra"
)


# Small trees in each benchmark's layout (tests/datasets/fixtures.py), for their root: ???.
ROOT_MAKERS = {
    "cub": fixtures.make_cub,
    "cars196": fixtures.make_cars196,
    "sop": fixtures.make_sop,
    "inshop": fixtures.make_inshop,
    "inaturalist2018": fixtures.make_inaturalist2018,
}


def csv_root(image_root):
    """image_root's images listed in a dataset.csv (path, class number)."""
    rows = ["path,label"] + [
        f"{path.relative_to(image_root)},{path.parent.name.removeprefix('class_')}"
        for path in sorted(image_root.rglob("*.png"))
    ]
    (image_root / "dataset.csv").write_text("\n".join(rows) + "\n")
    return image_root


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    """Four classes of three 12x12 images: enough for the image_folder config."""
    root = tmp_path_factory.mktemp("images")
    for label in range(4):
        (root / f"class_{label}").mkdir()
        for index in range(3):
            color = (60 * label, 20 * index, 200)
            Image.new("RGB", (12, 12), color).save(root / f"class_{label}" / f"{index}.png")
    return root


def build_selected(group, cfg):
    """Build the component that `group=option` selected, with the context the runner gives."""
    specs = check_config(cfg)
    train = Digits("train")
    if group == "dataset":
        return specs.dataset.build(split="train")
    if group == "model":
        return build_model(specs, train)[0].trunk
    if group == "loss":
        return build_loss(specs.loss, num_classes=5, embedding_size=64)
    if group == "miner":
        return specs.miner.build()
    if group == "sampler":
        labels = train.labels
        if cfg.sampler.name == "HierarchicalSampler":  # classes and super classes of two
            labels = torch.stack([labels, labels // 2], dim=1)
        return specs.sampler.build(
            labels=labels, batch_size=cfg.batch_size, length_before_new_iter=len(train)
        )
    if group == "optimizer":
        return specs.optimizer.build(params=[torch.nn.Parameter(torch.zeros(3))])
    if group == "scheduler":
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
        return specs.scheduler.build(optimizer=optimizer)
    if group == "tester":
        return specs.tester.build()
    return None  # experiment, trainer, ... presets: composing and checking them is the test


def test_there_is_a_config_per_core_group():
    groups = {group for group, _ in SHIPPED}
    assert {
        "dataset",
        "model",
        "loss",
        "miner",
        "sampler",
        "optimizer",
        "scheduler",
        "tester",
    } <= groups


@pytest.mark.parametrize(("group", "option"), SHIPPED, ids=[f"{g}={o}" for g, o in SHIPPED])
def test_shipped_config_composes_and_builds(group, option, image_root, tmp_path):
    overrides = [f"{group}={option}"]
    if (group, option) == ("dataset", "image_folder"):
        overrides.append(f"dataset.root={image_root}")
    if group == "dataset" and option in ROOT_MAKERS:
        overrides.append(f"dataset.root={ROOT_MAKERS[option](tmp_path / option)}")
    if (group, option) == ("dataset", "csv"):
        overrides.append(f"dataset.root={csv_root(image_root)}")
    if group == "experiment" and option.startswith("mlrc_"):
        overrides.append("dataset.root=unused")  # the presets leave the data's folder to the user
    if (group, option) == ("sampler", "fixed_set_of_triplets"):
        overrides.append("batch_size=63")  # whole triplets per batch, as the check demands
    cfg = compose_config(overrides)
    component = build_selected(group, cfg)
    if component is not None:
        block = cfg[group] if group != "model" else cfg.model.trunk
        expected = REGISTRIES[group].get(block.name, group) if "name" in block else None
        assert expected is None or isinstance(component, expected)


def test_root_config_defaults_list_and_run_settings():
    root = OmegaConf.load(CONF_DIR / "config.yaml")
    defaults = list(root.defaults)
    assert defaults[0] == "_self_"
    groups = [next(iter(d)) for d in defaults[1:] if isinstance(d, dict) or hasattr(d, "keys")]
    # experiment presets override the groups before them; debug=fast overrides everything.
    assert groups.index("experiment") > groups.index("logger")
    assert [g for g in groups if not g.startswith("override")][-1] == "debug"
    cfg = compose_config()
    assert (cfg.seed, cfg.device, cfg.mode, cfg.resume, cfg.checkpoint) == (
        0,
        "auto",
        "train",
        None,
        None,
    )
    assert cfg.epochs > 0 and cfg.batch_size > 0


def test_nested_parts_and_null_groups_are_selectable_from_the_command_line():
    cfg = compose_config(
        [
            "loss=triplet",
            "miner=null",
            "loss.distance=cosine_similarity",
            "loss.reducer=MeanReducer",
        ]
    )
    assert cfg.get("miner") is None
    specs = check_config(cfg)
    assert specs.miner is None
    loss = specs.loss.build()
    assert type(loss).__name__ == "TripletMarginLoss"
    assert type(loss.distance).__name__ == "CosineSimilarity"
    assert type(loss.reducer).__name__ == "MeanReducer"


def test_scheduler_follows_the_number_of_epochs():
    cfg = compose_config(["scheduler=cosine", "epochs=7"])
    assert cfg.scheduler.T_max == 7


def test_self_supervised_term_comes_with_the_digits_only(tmp_path):
    """Its augmentation fills with the digits' background, so other datasets start without
    it; asking for it still works."""
    folder = ["dataset=image_folder", f"dataset.root={tmp_path}"]
    assert compose_config(folder).get("self_supervised") is None
    assert compose_config([*folder, "self_supervised=simclr"]).self_supervised.weight == 0.5
    assert compose_config().self_supervised.augmentation.fill == -1


def test_self_supervised_term_is_checked_and_can_be_turned_off():
    specs = check_config(compose_config())
    assert specs.self_supervised.weight == 0.5
    assert specs.self_supervised.loss.build().loss.temperature == 0.1
    assert check_config(compose_config(["self_supervised=null"])).self_supervised is None
    for override, message in (
        ("self_supervised.weight=0", "self_supervised.weight: must be a number > 0"),
        (
            "+self_supervised.views=3",
            "needs exactly the keys weight, loss and augmentation; unknown views",
        ),
        (
            "+self_supervised.augmentation.degres=3",
            "self_supervised.augmentation: RandomAffine has no argument 'degres'",
        ),
        ("self_supervised.loss.name=NTXentLos", "unknown loss 'NTXentLos'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_config(compose_config([override]))


def test_an_augmentation_that_cannot_take_the_inputs_stops_before_training():
    spec = check_config(compose_config()).self_supervised
    with pytest.raises(
        ConfigError, match=r"augmentation: cannot take .* shape \(64,\).*self_supervised=null"
    ):
        build_self_supervised(spec, Digits("train", as_images=False)[0][0])
