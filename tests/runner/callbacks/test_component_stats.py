import pytest
import torch

from metric_runner.losses import TripletMarginLoss
from metric_runner.runner.callbacks import ComponentStats
from metric_runner.runner.record_stats import StatsRecorder, collecting_stats


def test_step_stats_for_the_loggers_and_their_epoch_means_in_the_record(state):
    with collecting_stats(True):
        loss = TripletMarginLoss(margin=0.1)
    callback = ComponentStats(StatsRecorder({"loss": loss, "miner": None}))
    callback.on_epoch_end(state)
    assert "stats" not in state.record  # the untrained evaluation has no training step
    labels = torch.tensor([0, 0, 1, 1])
    batches = (torch.eye(4)[:, :3], torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 0.8]]))
    margins = []
    for embeddings in batches:
        loss(embeddings, labels)
        callback.on_iteration_end(None, state)
        assert state.step_stats["loss/reducer/losses_size"] == 8  # 4 anchors x 1 pos x 2 negs
        margins.append(float(loss.avg_triplet_margin))
        assert state.step_stats["loss/avg_triplet_margin"] == pytest.approx(margins[-1])
    assert margins[0] != pytest.approx(margins[1])
    callback.on_epoch_end(state)
    assert state.record["stats"]["loss/avg_triplet_margin"] == pytest.approx(sum(margins) / 2)
    state.start_epoch_record(2)
    callback.on_epoch_end(state)  # no step since: nothing to average
    assert "stats" not in state.record
