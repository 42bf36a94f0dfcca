"""The runner's data-loading defaults: an image dataset with no transform chosen takes
transform/standard (its crop follows model.input_size), and num_workers / pin_memory `auto`
resolve per dataset and device; explicit values stay as given, bad ones are refused."""

import sys

import pytest
import torch
from torchvision.transforms import v2

from metric_runner.datasets import Digits, ZeroShotSplit
from metric_runner.runner import cli
from metric_runner.runner.callbacks import Callback
from metric_runner.runner.cli import compose_config, run
from metric_runner.runner.components import check_config
from metric_runner.runner.data import (
    MAX_AUTO_WORKERS,
    loader_settings,
    resolve_num_workers,
    resolve_pin_memory,
)
from metric_runner.runner.registry import ConfigError
from tests.datasets import fixtures

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    return fixtures.make_cub(root, class_ids=[*range(1, 9), *range(101, 105)], images_per_class=2)


def crop_sizes(overrides, root):
    """The train split's RandomResizedCrop size and the val split's CenterCrop size, from the
    splits the composed config builds."""
    specs = check_config(compose_config([*overrides, f"dataset.root={root}"]))
    train, val = (specs.dataset.build(split=split) for split in ("train", "val"))
    assert isinstance(train, ZeroShotSplit)
    return tuple(only_step(train, v2.RandomResizedCrop).size), tuple(
        only_step(val, v2.CenterCrop).size
    )


def only_step(split, step_class):
    steps = [s for s in split.transform.geometric.transforms if isinstance(s, step_class)]
    assert len(steps) == 1, split.transform.geometric
    return steps[0]


@pytest.mark.parametrize(
    ("overrides", "crop"),
    [
        (["dataset=cub", "model=bn_inception"], 227),  # BN-Inception's model.input_size
        (["dataset=cub", "model=resnet50"], 224),
        (["dataset=cub"], 224),  # small_cnn names no input size
        (["dataset=cub", "model=bn_inception", "transform=standard"], 227),
        (["dataset=cub", "model=bn_inception", "transform=tiny"], 32),
        (["experiment=mlrc_cub_triplet"], 227),
        (["experiment=mlrc_cub_triplet", "transform=tiny"], 32),
    ],
)
def test_an_image_dataset_without_a_chosen_transform_takes_the_standard_one(
    cub_root, overrides, crop
):
    assert crop_sizes(overrides, cub_root) == ((crop, crop), (crop, crop))


def test_the_default_transform_is_transform_standard_itself():
    chosen = compose_config(["dataset=sop", "model=bn_inception", "transform=standard"])
    default = compose_config(["dataset=sop", "model=bn_inception"])
    assert default.dataset.transform == chosen.dataset.transform
    assert default.transform == chosen.transform
    assert default.dataset.transform.resize == 256 and default.dataset.transform.flip == 0.5


def test_digits_has_no_transform():
    cfg = compose_config([])
    assert cfg.get("transform") is None and "transform" not in cfg.dataset
    assert check_config(cfg).dataset.cls is Digits


def with_cpus(monkeypatch, count):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(count)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (3, 3), (64, MAX_AUTO_WORKERS)])
def test_auto_workers_read_files_on_the_usable_cpus(monkeypatch, cpus, workers):
    with_cpus(monkeypatch, cpus)
    assert resolve_num_workers("auto", ZeroShotSplit) == workers
    assert resolve_num_workers("auto", Digits) == 0  # in-memory tensors: no workers


def test_auto_workers_share_the_cpus_among_torchrun_processes(monkeypatch):
    with_cpus(monkeypatch, 12)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve_num_workers("auto", ZeroShotSplit) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert resolve_num_workers("auto", ZeroShotSplit) == 1


@pytest.mark.parametrize("workers", [0, 3, 20])
def test_explicit_workers_are_kept(monkeypatch, workers):
    with_cpus(monkeypatch, 2)
    assert resolve_num_workers(workers, ZeroShotSplit) == workers
    assert resolve_num_workers(workers, Digits) == workers


@pytest.mark.parametrize("bad", [-1, "many", True, 2.5, None])
def test_bad_workers_are_refused(bad):
    with pytest.raises(ConfigError, match=r"^num_workers: must be auto or an integer >= 0, got"):
        resolve_num_workers(bad, ZeroShotSplit)


def test_pin_memory_resolves_on_the_device():
    assert resolve_pin_memory("auto", CUDA) is True
    assert resolve_pin_memory("auto", CPU) is False
    assert resolve_pin_memory(True, CUDA) is True
    assert resolve_pin_memory(False, CUDA) is False
    assert resolve_pin_memory(True, CPU) is False  # pinning only helps copies to a GPU
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError, match=r"^pin_memory: must be auto, true or false, got"):
            resolve_pin_memory(bad, CUDA)


def test_the_config_defaults_are_auto(monkeypatch):
    with_cpus(monkeypatch, 4)
    cfg = compose_config(["dataset=cub", "dataset.root=unused"])
    assert (cfg.num_workers, cfg.pin_memory) == ("auto", "auto")
    settings = loader_settings(cfg.num_workers, cfg.pin_memory, ZeroShotSplit, CUDA)
    assert (settings.num_workers, settings.pin_memory) == (4, True)
    settings = loader_settings(cfg.num_workers, cfg.pin_memory, Digits, CPU)
    assert (settings.num_workers, settings.pin_memory) == (0, False)


class LoaderSeen(Callback):
    def on_iteration_end(self, trainer, state):
        loader = trainer.dataloader
        self.seen = (loader.num_workers, loader.pin_memory, loader.persistent_workers)


@pytest.mark.slow
def test_an_image_run_reads_with_persistent_workers_by_default(monkeypatch, cub_root, tmp_path):
    with_cpus(monkeypatch, 2)
    seen = LoaderSeen()
    overrides = ["dataset=cub", f"dataset.root={cub_root}", "transform=tiny", "device=cpu"]
    quick = ["epochs=1", "max_batches_per_epoch=1", "batch_size=8", "sampler.m=2"]
    testers = []
    run(
        compose_config([*overrides, *quick, "dataset.num_folds=2"]),
        tmp_path,
        callbacks=[seen],
        on_built=lambda parts: testers.append(parts.tester),
    )
    assert seen.seen == (2, False, True)
    assert testers[0].dataloader_num_workers == 2  # evaluation reads with the same workers


def test_a_bad_value_stops_metric_run_with_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["metric-run", "num_workers=many", "device=cpu"])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["metric-run: error: num_workers: must be auto or an integer >= 0, got 'many'"]
    assert list(tmp_path.iterdir()) == []  # refused before Hydra made a run directory
