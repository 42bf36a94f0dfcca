import csv
import sqlite3

import pytest
import torch

from metric_runner.losses import ContrastiveLoss
from metric_runner.runner.callbacks import RecordKeeperLog, TrainerHooks, TrainingLoss
from metric_runner.trainers import MetricLossOnly

from .conftest import evaluated

pytest.importorskip("record_keeper")


def rows(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_training_records_and_each_evaluation_in_csv_and_sqlite(state, tmp_path):
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 3), torch.arange(4).repeat(8))
    log = RecordKeeperLog(tmp_path / "logs", log_freq=2)
    hooks = TrainerHooks(state, [TrainingLoss(), log])
    trainer = MetricLossOnly(
        models={"trunk": state.models["trunk"]},
        optimizers={"trunk_optimizer": state.optimizer},
        batch_size=8,
        loss_funcs={"metric_loss": ContrastiveLoss()},
        dataset=data,
        dataloader_num_workers=0,
        data_device="cpu",
        end_of_iteration_hook=hooks.end_of_iteration_hook,
    )
    hooks.begin()
    trainer.train(1, 1)  # 4 iterations: records at iterations 0 and 2
    evaluated(state, 1, 0.75).record["train_loss"] = 0.5
    log.on_epoch_end(state)

    losses = rows(tmp_path / "logs" / "loss_histories.csv")
    assert [float(r["metric_loss"]) for r in losses] == pytest.approx(
        [float(r["total_loss"]) for r in losses]
    )
    assert [int(r["~iteration~"]) for r in losses] == [0, 2]
    (accuracies,) = rows(tmp_path / "logs" / "accuracies_val.csv")
    assert float(accuracies["mean_average_precision_at_r"]) == 0.75
    assert float(accuracies["train_loss"]) == 0.5
    assert int(accuracies["~iteration~"]) == 1
    with sqlite3.connect(tmp_path / "logs" / "logs.db") as db:
        stored = db.execute("SELECT mean_average_precision_at_r FROM accuracies_val").fetchall()
    assert stored == [(0.75,)]
