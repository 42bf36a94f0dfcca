"""A small TrainingState and a stand-in for the trainer, for testing each callback alone."""

from types import SimpleNamespace

import pytest
import torch

from metric_runner.runner.state import TrainingState


def make_state():
    torch.manual_seed(0)
    trunk, loss = torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(
        [
            {"name": "model", "params": list(trunk.parameters()), "lr": 0.1},
            {"name": "loss", "params": list(loss.parameters()), "lr": 0.5},
        ]
    )
    return TrainingState(
        models={"trunk": trunk},
        loss=loss,
        optimizer=optimizer,
        scheduler=None,
        grad_scaler=torch.amp.GradScaler("cpu", enabled=False),
        config_yaml="seed: 0\n",
        config_hash="abc",
    )


@pytest.fixture
def state():
    return make_state()


def trainer_with_loss(value):
    """What a callback reads from the trainer after a step."""
    return SimpleNamespace(losses={"total_loss": torch.tensor(value, requires_grad=True) * 1})


def evaluated(state, epoch, score, split="val", metric="mean_average_precision_at_r"):
    """`state` as the Evaluation callback leaves it after an evaluation scoring `score`."""
    state.start_epoch_record(epoch)
    state.record["accuracies"] = {split: {metric: score}}
    state.score = score
    state.improved = score > state.progress.best_score
    if state.improved:
        state.progress.best_score, state.progress.best_epoch = score, epoch
        state.progress.stale_evals = 0
    else:
        state.progress.stale_evals += 1
    return state
