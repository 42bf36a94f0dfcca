"""dataset.decode: a run whose batches are decoded on the device (here the CPU, the same code
nvJPEG runs behind on CUDA) trains and evaluates on exactly the images the workers' decoding
gives, so its metrics are those of dataset.decode=cpu, value for value."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metric_runner.datasets import ZeroShotSplit
from metric_runner.datasets.batch_decode import BatchDecoder, EncodedImages, collate_encoded
from metric_runner.runner import cli
from metric_runner.runner.callbacks import Callback
from metric_runner.runner.cli import compose_config, run
from metric_runner.runner.components import build_tester, check_config
from metric_runner.runner.evaluate import evaluate_checkpoint
from metric_runner.runner.registry import ConfigError, Spec
from metric_runner.testers import KNNTester
from tests.datasets import fixtures

CPU = torch.device("cpu")


def textured(root):
    """Every JPEG under root replaced by smooth noise (48x40): random crops and flips then
    change the pixels, so a batch transformed differently changes the loss."""
    rng = np.random.default_rng(0)
    for path in sorted(root.rglob("*.jpg")):
        coarse = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((48, 40), Image.BILINEAR).save(path, format="JPEG")
    return root


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    """CUB's layout: classes 1-8 train (and validate), 101-104 test, four images each."""
    root = tmp_path_factory.mktemp("cub")
    classes = [*range(1, 9), *range(101, 105)]
    return textured(fixtures.make_cub(root, class_ids=classes, images_per_class=4))


def cub_run(root, decode):
    return [
        "dataset=cub",
        f"dataset.root={root}",
        f"dataset.decode={decode}",
        "device=cpu",
        "epochs=1",
        "transform=tiny",
        "sampler.m=2",
        "batch_size=8",
        "num_workers=0",  # workers would draw the random crops from their own generators
    ]


class TrainerInputs(Callback):
    """What the trainer reads its batches with, seen from inside the training loop."""

    def on_iteration_end(self, trainer, state):
        self.seen = (
            type(trainer.dataset),
            trainer.collate_fn,
            type(trainer.data_and_label_getter),
            trainer.pin_memory,
        )


@pytest.mark.slow
def test_decoding_batches_on_the_device_gives_the_workers_metrics(cub_root, tmp_path):
    runs = {}
    for decode in ("cpu", "gpu"):
        inputs, built = TrainerInputs(), []
        records = run(
            compose_config(cub_run(cub_root, decode)),
            tmp_path / decode,
            callbacks=[inputs],
            on_built=built.append,
        )
        runs[decode] = (records, inputs.seen, built[0])
    (cpu_records, cpu_inputs, cpu_parts), (gpu_records, gpu_inputs, gpu_parts) = runs.values()
    assert gpu_inputs == (EncodedImages, collate_encoded, BatchDecoder, False)
    assert cpu_inputs[:2] == (ZeroShotSplit, None) and cpu_inputs[2] is not BatchDecoder
    assert isinstance(gpu_parts.tester.data_and_label_getter, BatchDecoder)
    assert {type(d) for d in gpu_parts.eval_loading.datasets.values()} == {EncodedImages}
    assert gpu_parts.eval_loading.collate_fn is collate_encoded
    assert {type(d) for d in cpu_parts.eval_loading.datasets.values()} == {ZeroShotSplit}
    # Same random crops and flips, same pixels: the loss and every accuracy agree exactly.
    assert [r["epoch"] for r in gpu_records] == [0, 1]
    assert gpu_records[-1]["train_loss"] is not None
    assert gpu_records == cpu_records


@pytest.mark.slow
def test_mode_test_decodes_on_the_device_when_asked(cub_root, tmp_path):
    run_dir = tmp_path / "trained"
    records = run(compose_config(cub_run(cub_root, "cpu")), run_dir)
    for decode in ("cpu", "gpu"):
        overrides = ["mode=test", f"checkpoint={run_dir}", *cub_run(cub_root, decode)[:3]]
        record = evaluate_checkpoint(compose_config(overrides), tmp_path / decode, overrides)
        best = next(r for r in records if r["epoch"] == record["epoch"])  # best.pt's epoch
        assert record["accuracies"] == best["accuracies"]


@pytest.mark.slow
def test_mode_test_takes_one_key_of_the_checkpoints_dataset_from_the_command_line(
    cub_root, tmp_path, monkeypatch, capsys
):
    """`dataset.decode` alone: the default config's dataset (the digits) has no such key, the
    checkpoint's (CUB) has; the CUB section runs with that one key changed."""
    run_dir = tmp_path / "trained"
    records = run(compose_config(cub_run(cub_root, "cpu")), run_dir)
    arguments = ["mode=test", f"checkpoint={run_dir}", "dataset.decode=gpu", "device=cpu"]
    monkeypatch.setattr(sys, "argv", ["metric-run", *arguments, f"hydra.run.dir={tmp_path / 't'}"])
    cli.main()
    assert "from the command line instead of the checkpoint: dataset.decode\n" in (
        capsys.readouterr().out
    )
    (record,) = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").open()]
    best = next(r for r in records if r["epoch"] == record["epoch"])
    assert record["accuracies"] == best["accuracies"]
    saved = (tmp_path / "t" / ".hydra" / "overrides.yaml").read_text()
    assert "++dataset.decode=gpu" in saved


def test_an_unknown_decode_mode_is_refused_before_any_data_is_loaded():
    cfg = compose_config(["dataset=cub", "dataset.root=/nonexistent", "dataset.decode=nvjpeg"])
    message = "dataset.decode: 'nvjpeg' is not a decode mode; use one of cpu, gpu, auto ("
    with pytest.raises(ConfigError, match=re.escape(message)) as refusal:
        check_config(cfg)
    assert "\n" not in str(refusal.value)


def test_the_shipped_image_datasets_decode_in_the_workers_by_default():
    for dataset in ("cub", "cars196", "sop", "inshop", "inaturalist2018", "csv", "image_folder"):
        assert compose_config([f"dataset={dataset}"]).dataset.decode == "cpu"


class PlainTester:
    """A tester with the runner's evaluate() but without PML's data_and_label_getter."""

    def __init__(self, data_device=None):
        self.data_device = data_device

    def evaluate(self, splits, epoch, trunk_model, embedder_model=None, plot_dir=None):
        return {}, None


def test_a_tester_that_cannot_take_decoded_batches_is_refused(tmp_path):
    root = textured(fixtures.make_inshop(tmp_path))
    splits = {"test": ZeroShotSplit("InShop", root, "test", decode="gpu")}
    with pytest.raises(ConfigError, match=r"PlainTester cannot evaluate .*dataset.decode=cpu"):
        build_tester(Spec(PlainTester, {}, "tester"), splits, CPU)
    splits["test"].decode = "cpu"
    tester, loading = build_tester(Spec(PlainTester, {}, "tester"), splits, CPU)
    assert isinstance(tester, PlainTester) and loading.datasets == splits


def test_in_shop_queries_search_the_gallery_in_decoded_batches_too(tmp_path):
    """The test split's query mask travels with its bytes (EncodedImages.is_query), so the
    tester still scores queries against the gallery."""
    root = textured(fixtures.make_inshop(Path(tmp_path)))
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(8))
    results = {}
    for decode in ("cpu", "gpu"):
        transform = {"crop_size": 16, "resize": 18}
        splits = {"test": ZeroShotSplit("InShop", root, "test", transform, decode=decode)}
        tester, loading = build_tester(Spec(KNNTester, {"batch_size": 4}, "tester"), splits, CPU)
        decoding = {"collate_fn": loading.collate_fn} if loading.decodes_batches else {}
        results[decode] = tester.evaluate(loading.datasets, 0, trunk, **decoding)[0]
    encoded = loading.datasets["test"]
    assert torch.equal(encoded.is_query, splits["test"].is_query) and encoded.is_query.any()
    assert results["gpu"] == results["cpu"]
