import pytest
import torch

from metric_runner.runner.callbacks import Evaluation
from metric_runner.runner.registry import ConfigError
from metric_runner.testers import KNNTester

MAP_AT_R = "mean_average_precision_at_r"


def splits():
    """1-D points: label 0 at 0, 1, 2 and label 1 at 2.5, 9 (val); val reversed (test)."""
    x = torch.tensor([[0.0], [1.0], [2.0], [2.5], [9.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    return {
        "val": torch.utils.data.TensorDataset(x, labels),
        "test": torch.utils.data.TensorDataset(-x, labels),
    }


class Scale(torch.nn.Module):
    """The embedding: x * weight (so "training" can be simulated by changing it)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.weight


def make_evaluation(trunk, every=2, last_epoch=5):
    tester = KNNTester(normalize_embeddings=False, batch_size=2, data_device="cpu")
    return Evaluation(tester, splits(), trunk, None, every, last_epoch, ("val", MAP_AT_R))


def test_evaluates_at_epoch_0_every_n_epochs_and_the_last_one(state):
    evaluation = make_evaluation(Scale())
    evaluated = []
    for epoch in range(6):
        state.start_epoch_record(epoch)
        evaluation.on_epoch_end(state)
        if state.evaluated:
            evaluated.append(epoch)
    assert evaluated == [0, 2, 4, 5]


def test_tracks_the_best_score_and_the_evaluations_without_improvement(state):
    trunk = Scale()
    evaluation = make_evaluation(trunk, every=1)
    state.start_epoch_record(0)
    evaluation.on_epoch_end(state)
    # By hand (k = max_bin_count): label 0: 0 -> 1, 2 (AP 1); 1 -> 0 or 2 (tie), then the
    # other (1); 2 -> 2.5 (label 1) then 1: MAP@R = (1/2) / 2; label 1 (R = 1): 2.5 -> 2 (0),
    # 9 -> 2.5 (1). Mean over 5 queries: (1 + 1 + 1/4 + 0 + 1) / 5.
    assert state.score == pytest.approx(3.25 / 5)
    assert state.record["accuracies"]["val"][MAP_AT_R] == state.score
    assert set(state.record["accuracies"]) == {"val", "test"}
    assert state.improved and state.progress.best_epoch == 0
    for epoch in (1, 2):  # the same embedding: no improvement
        state.start_epoch_record(epoch)
        evaluation.on_epoch_end(state)
        assert not state.improved
    assert (state.progress.best_score, state.progress.stale_evals) == (3.25 / 5, 2)


def test_a_metric_the_tester_does_not_report_is_a_config_error(state):
    evaluation = make_evaluation(Scale())
    evaluation.monitor = ("val", "NMI")
    state.start_epoch_record(0)
    with pytest.raises(ConfigError, match="the tester reported no val/NMI"):
        evaluation.on_epoch_end(state)
