"""A loss with learnable weights (ArcFace) in the runner: sized from the data and model, its
own optimizer group, saved in checkpoints and restored on resume, not needed by mode=test."""

import pytest
import torch

from metric_runner.runner.checkpoint import load_checkpoint
from metric_runner.runner.cli import compose_config, run

pytestmark = pytest.mark.slow
# scheduler=null keeps both learning rates constant, so they can be asserted after training.
OVERRIDES = [
    "loss=arcface",
    "miner=null",
    "self_supervised=null",
    "scheduler=null",
    "optimizer.lr=0.002",
    "loss_optimizer.lr=0.05",
]


class KeepBuiltLosses(list):
    """on_built: every loss module the runner builds, with a copy of its weights as built."""

    def __call__(self, parts):
        self.append((parts.loss, parts.loss.W.detach().clone()))


def saved_weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["loss"]["W"]


def test_arcface_trains_resumes_and_its_weights_round_trip(tmp_path):
    built_losses = KeepBuiltLosses()
    first = run(compose_config([*OVERRIDES, "epochs=1"]), tmp_path / "run", on_built=built_losses)
    loss, initial = built_losses[0]
    # num_classes (digits 0-4) and embedding_size (the embedder's 64) came from the runner.
    assert (loss.num_classes, loss.W.shape) == (5, (64, 5))
    assert not torch.equal(loss.W.detach(), initial)  # the loss's own weights were trained
    torch.testing.assert_close(saved_weights(tmp_path / "run"), loss.W.detach(), rtol=0, atol=0)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    groups = {group["name"]: group for group in state["optimizer"]["param_groups"]}
    assert (groups["model"]["lr"], groups["loss"]["lr"]) == (0.002, 0.05)
    assert len(groups["loss"]["params"]) == 1  # W only
    assert first[-1]["lr"] == {"model": 0.002, "loss": 0.05}

    resumed = run(
        compose_config([*OVERRIDES, "epochs=2", f"resume={tmp_path / 'run'}"]),
        tmp_path / "run",
        on_built=built_losses,
    )
    uninterrupted = run(
        compose_config([*OVERRIDES, "epochs=2"]), tmp_path / "straight", on_built=built_losses
    )
    resumed_loss, resumed_initial = built_losses[1]
    # Resuming restored epoch 1's weights (not the fresh ones) and went on exactly.
    torch.testing.assert_close(resumed_initial, initial, rtol=0, atol=0)  # same seed, same init
    assert resumed == uninterrupted
    straight_loss = built_losses[2][0]
    torch.testing.assert_close(resumed_loss.W.detach(), straight_loss.W.detach(), rtol=0, atol=0)
    torch.testing.assert_close(
        saved_weights(tmp_path / "run"), resumed_loss.W.detach(), rtol=0, atol=0
    )
    assert not torch.equal(resumed_loss.W.detach(), loss.W.detach())  # epoch 2 trained it on

    # mode=test builds no loss: neither the ArcFace config nor its weights are needed.
    record = run(
        compose_config(["mode=test", f"checkpoint={tmp_path / 'run'}"]),
        tmp_path / "test",
        on_built=built_losses,
    )
    assert len(built_losses) == 3
    best = max(resumed, key=lambda r: r["accuracies"]["val"]["mean_average_precision_at_r"])
    assert record["accuracies"] == best["accuracies"]
