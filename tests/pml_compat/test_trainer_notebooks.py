"""PML's trainer notebooks (MetricLossOnly, TrainWithClassifier, CascadedEmbeddings,
DeepAdversarialMetricLearning, TwoStreamMetricLoss) run to the end on metric_runner with only the
import swapped, on small CIFAR100 stand-ins, CPU, few epochs; then what their logging-preset
hooks wrote (CSV, SQLite, TensorBoard, saved models) is read back and checked against the trainer
they trained.

Besides the data, two things outside the library are stood in: the pretrained torchvision trunks
(resnet18, shufflenet_v2; their weights are downloaded) by a small CNN with the same `fc`
attribute the notebooks replace, and `umap` (not installed) by a 2D PCA, which only feeds the
notebooks' plots."""

import csv
import sqlite3
import types

import numpy as np
import pytest
import torch

from metric_runner.utils.record_keeper_adapter import hash_if_too_long
from tests.pml_compat.notebooks import StandInCIFAR100, run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_threaded_faiss")]

NUM_EPOCHS = 3
SMALL_CIFAR100 = StandInCIFAR100.sized(200, 100)
PATIENCE = 1  # the notebooks' end_of_epoch_hook(..., patience=1)


class SmallTrunk(torch.nn.Module):
    """Stands in for a pretrained torchvision classifier: features, then an `fc` layer."""

    def __init__(self, num_features):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, num_features, 5, stride=4),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
        self.fc = torch.nn.Linear(num_features, 1000)

    def forward(self, x):
        return self.fc(self.features(x))


def pretrained_stand_in(num_features):
    def build(pretrained=False, **kwargs):
        return SmallTrunk(num_features)

    return build


class StandInUMAP:
    """umap.UMAP's fit_transform, as a 2D PCA."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def fit_transform(self, x):
        centered = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
        return centered @ np.linalg.svd(centered, full_matrices=False)[2][:2].T


def run_trainer_notebook(
    name, directory, library="metric_runner", cifar=SMALL_CIFAR100, **assignments
):
    torch.manual_seed(0)
    np.random.seed(0)
    directory.mkdir()
    return run_notebook(
        name,
        cwd=directory,
        datasets={"CIFAR100": cifar},
        modules={"umap": types.SimpleNamespace(UMAP=StandInUMAP)},
        patches={
            "torchvision.models.resnet18": pretrained_stand_in(24),
            "torchvision.models.shufflenet_v2_x0_5": pretrained_stand_in(8),
            "torchvision.models.shufflenet_v2_x1_0": pretrained_stand_in(16),
        },
        assignments={"num_epochs": NUM_EPOCHS, **assignments},
        library=library,
    )


def read_table(directory, table):
    connection = sqlite3.connect(directory / "example_logs" / "logs.db")
    connection.row_factory = sqlite3.Row
    rows = connection.execute(f"SELECT * FROM [{hash_if_too_long(table)}] ORDER BY id").fetchall()
    connection.close()
    return {column: [row[column] for row in rows] for column in rows[0].keys() if column != "id"}


def csv_headers(directory):
    headers = {}
    for path in sorted((directory / "example_logs").glob("*.csv")):
        with open(path) as f:
            headers[path.name] = next(csv.reader(f))
    return headers


def expected_best_epochs_and_stop(history, patience):
    """Best epoch after each test (ties keep the earlier) and the epoch that stops (or None)."""
    best_epochs, best = [], None
    for epoch, accuracy in history:
        if best is None or accuracy > best[1]:
            best = (epoch, accuracy)
        best_epochs.append(best[0])
        if patience is not None and epoch - best[0] > patience:
            return best_epochs, epoch
    return best_epochs, None


def check_what_the_hooks_wrote(directory, namespace, patience=PATIENCE):
    """The validation table holds one row per trained epoch with the right best epoch, training
    stopped where patience says, the loss table has every loss of the trainer at the first
    iteration of each epoch (log_freq=50 > iterations per epoch), and the saved files are the
    latest and the best epoch's, the latest equal to the trained models."""
    trainer, hooks, tester = namespace["trainer"], namespace["hooks"], namespace["tester"]
    validation = read_table(directory, hooks.record_group_name(tester, "val"))
    assert validation["epoch"] == list(range(1, trainer.epoch + 1))
    history = list(zip(validation["epoch"], validation["mean_average_precision_at_r_level0"]))
    best_epochs, stop_epoch = expected_best_epochs_and_stop(history, patience)
    assert validation["best_epoch"] == best_epochs
    assert trainer.epoch == (NUM_EPOCHS if stop_epoch is None else stop_epoch)
    assert all(0 < value <= 1 for value in validation["precision_at_1_level0"])

    losses = read_table(directory, "loss_histories")
    assert set(losses) == {"~iteration~", *trainer.loss_tracker.losses}
    assert losses["~iteration~"] == [
        epoch * trainer.iterations_per_epoch for epoch in range(trainer.epoch)
    ]
    assert all(np.isfinite(losses["total_loss"]))

    names = [
        name
        for group in ["models", "optimizers", "loss_funcs", "mining_funcs"]
        for name, obj in (getattr(trainer, group) or {}).items()
        if hasattr(obj, "state_dict")
    ]
    saved = {p.name for p in (directory / "example_saved_models").iterdir()}
    suffixes = {str(trainer.epoch), f"best{best_epochs[-1]}"}
    assert saved == {f"{name}_{suffix}.pth" for name in names for suffix in suffixes}
    latest = torch.load(
        directory / "example_saved_models" / f"trunk_{trainer.epoch}.pth", weights_only=True
    )
    for key, value in trainer.models["trunk"].state_dict().items():
        assert torch.equal(latest[key], value), key
    assert list((directory / "example_tensorboard").glob("events.out.tfevents.*"))
    return trainer


def test_metric_loss_only_notebook_runs_to_the_end_and_logs_as_pml(tmp_path, pml):
    ours = run_trainer_notebook("MetricLossOnly", tmp_path / "ours")
    check_what_the_hooks_wrote(tmp_path / "ours", ours.namespace)
    run_trainer_notebook("MetricLossOnly", tmp_path / "pml", library="pytorch_metric_learning")
    # The same files with the same columns as PML's trainer and hooks write.
    assert csv_headers(tmp_path / "ours") == csv_headers(tmp_path / "pml")


def test_train_with_classifier_notebook_runs_to_the_end(tmp_path):
    run = run_trainer_notebook("TrainWithClassifier", tmp_path / "run")
    trainer = check_what_the_hooks_wrote(tmp_path / "run", run.namespace)
    assert set(trainer.loss_tracker.losses) == {"metric_loss", "classifier_loss", "total_loss"}
    weights = read_table(tmp_path / "run", "loss_weights")
    assert weights["classifier_loss"] == [0.5] * trainer.epoch  # the notebook's loss_weights


def test_cascaded_embeddings_notebook_runs_to_the_end(tmp_path):
    run = run_trainer_notebook("CascadedEmbeddings", tmp_path / "run")
    trainer = check_what_the_hooks_wrote(tmp_path / "run", run.namespace)
    assert {"metric_loss_0", "metric_loss_1", "metric_loss_2"} <= set(trainer.loss_tracker.losses)
    # three 64-dim embedders, concatenated: what the tester evaluated
    assert trainer.models["embedder"](torch.zeros(2, 8 + 16 + 24)).shape == (2, 192)


def test_two_stream_metric_loss_notebook_runs_to_the_end(tmp_path, monkeypatch):
    # The notebook's own dataset code calls np.in1d, removed in numpy 2.4; np.isin is its
    # documented replacement (same result for 1-D arrays).
    monkeypatch.setattr(np, "in1d", np.isin, raising=False)
    # Each class needs images in both streams of the notebook's 80/20 random split, and the
    # notebook samples one anchor per class name (m=1 over `original_train.classes`) for batches
    # of 128: CIFAR100's images with 10 classes of 25 keep both true and the run short.
    cifar = type("StandInCIFAR100", (StandInCIFAR100.sized(250, 250),), {"num_classes": 10})
    run = run_trainer_notebook("TwoStreamMetricLoss", tmp_path / "run", cifar=cifar)
    check_what_the_hooks_wrote(tmp_path / "run", run.namespace, patience=None)


def test_deep_adversarial_metric_learning_notebook_runs_to_the_end_as_pml(tmp_path, pml):
    """The notebook generates g_triplets_per_anchor=100 synthetic negatives per anchor, so its
    batch of 32 becomes 9600 embeddings; batch_size=8 (and fewer images) keeps CPU time short.
    Its 3 epochs cover the schedule: metric model alone, generator alone, then both; the loss
    weights logged at each epoch's start show it, as PML's trainer logs them."""
    small = {"cifar": StandInCIFAR100.sized(120, 60), "batch_size": 8}
    run = run_trainer_notebook("DeepAdversarialMetricLearning", tmp_path / "ours", **small)
    trainer = check_what_the_hooks_wrote(tmp_path / "ours", run.namespace)
    assert {"metric_loss", "synth_loss", "g_adv_loss", "g_hard_loss", "g_reg_loss"} <= set(
        trainer.loss_tracker.losses
    )
    run_trainer_notebook(
        "DeepAdversarialMetricLearning", tmp_path / "pml", "pytorch_metric_learning", **small
    )
    ours, theirs = csv_headers(tmp_path / "ours"), csv_headers(tmp_path / "pml")
    # g_adv_loss's distance logs as PML's does: one NegativeLpDistance group with p and power.
    negative = "g_adv_loss_TripletMarginLoss__modules_distance_NegativeLpDistance.csv"
    assert ours[negative] == theirs[negative] == ["~iteration~", "p", "power"]
    assert ours == theirs
    weights = read_table(tmp_path / "ours", "loss_weights")
    assert weights == read_table(tmp_path / "pml", "loss_weights")
    assert weights["synth_loss"][-1] == 0.1  # both phases: the notebook's loss_weights
