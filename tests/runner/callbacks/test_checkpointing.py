import torch

from metric_runner.runner.callbacks import Checkpointing
from metric_runner.runner.checkpoint import load_checkpoint

from .conftest import evaluated, make_state


def test_best_when_improved_and_last_every_epoch(state, tmp_path):
    callback = Checkpointing(tmp_path)
    evaluated(state, 0, 0.5)
    callback.on_epoch_end(state)
    with torch.no_grad():
        state.models["trunk"].weight.add_(1)
    evaluated(state, 1, 0.25)  # worse: last.pt only
    callback.on_epoch_end(state)
    best, last = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tmp_path / "last.pt")
    assert (best["epoch"], last["epoch"]) == (0, 1)
    assert last["progress"] == {
        "epoch": 1,
        "global_step": 0,
        "best_score": 0.5,
        "best_epoch": 0,
        "stale_evals": 1,
    }
    torch.testing.assert_close(
        last["models"]["trunk"]["weight"] - best["models"]["trunk"]["weight"],
        torch.ones(2, 3),
    )

    restored = make_state()  # a fresh run's parts, then the checkpoint
    restored.load_state_dict(last, tmp_path / "last.pt")
    assert restored.progress == state.progress
    for name, tensor in state.models["trunk"].state_dict().items():
        torch.testing.assert_close(restored.models["trunk"].state_dict()[name], tensor)
