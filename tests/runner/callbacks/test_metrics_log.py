import json

from metric_runner.runner.callbacks import MetricsLog

from .conftest import evaluated


def test_one_json_line_per_evaluation_and_a_printed_line(state, tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, epochs=3, metric="mean_average_precision_at_r")
    log.on_train_begin(state)
    evaluated(state, 0, 0.5)
    log.on_epoch_end(state)
    state.start_epoch_record(1)  # not evaluated: nothing logged
    log.on_epoch_end(state)
    evaluated(state, 2, 0.75).record["train_loss"] = 0.125
    log.on_epoch_end(state)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 2]
    assert lines[1] == {
        "epoch": 2,
        "global_step": 0,
        "train_loss": 0.125,
        "accuracies": {"val": {"mean_average_precision_at_r": 0.75}},
    }
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "epoch 0/3  untrained  val/mean_average_precision_at_r 0.5000",
        "epoch 2/3  train loss 0.1250  val/mean_average_precision_at_r 0.7500",
    ]


def test_on_resume_evaluations_after_the_checkpoint_are_dropped(state, tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(4)))
    state.progress.epoch = 2  # the checkpoint resumed
    MetricsLog(path, epochs=5, metric="x").on_train_begin(state)
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [0, 1, 2]
