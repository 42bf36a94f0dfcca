import numpy as np
import pytest
import torch

from metric_runner.testers import GlobalEmbeddingSpaceTester
from metric_runner.testers.scatter_plot import ScatterPlotHook, default_visualizer
from metric_runner.utils.accuracy_calculator import AccuracyCalculator
from tests.testers.helpers import models, one_level_dataset


def test_tester_saves_one_png_per_split(tmp_path):
    pytest.importorskip("matplotlib")
    hook = ScatterPlotHook(tmp_path / "plots")
    tester = GlobalEmbeddingSpaceTester(
        dataloader_num_workers=0,
        data_device="cpu",
        accuracy_calculator=AccuracyCalculator(include=("precision_at_1",)),
        visualizer=default_visualizer(),
        visualizer_hook=hook,
    )
    trunk, embedder = models()
    tester.test(
        {"train": one_level_dataset(seed=1), "val": one_level_dataset(seed=2)}, 3, trunk, embedder
    )
    name = type(tester.visualizer).__name__
    expected = {
        tmp_path / "plots" / f"{split}_{name}_level0_epoch3.png" for split in ("train", "val")
    }
    assert set(hook.saved_paths) == expected
    for path in expected:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_visualizer_gives_2d_points():
    points = default_visualizer().fit_transform(np.random.default_rng(0).normal(size=(40, 5)))
    assert points.shape == (40, 2)


def test_hook_rejects_points_that_are_not_2d(tmp_path):
    with pytest.raises(ValueError, match=r"2-D points \(N, 2\)"):
        ScatterPlotHook(tmp_path)(None, torch.zeros(5, 1).numpy(), np.zeros(5), "val", "x", 0)
