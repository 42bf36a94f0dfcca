from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metric_runner.runner.callbacks import TensorBoardLog, TrainingLoss

from .conftest import evaluated, trainer_with_loss


def scalars(folder, tag):
    events = EventAccumulator(str(folder))
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_step_losses_stats_and_each_evaluation(state, tmp_path):
    log, loss = TensorBoardLog(tmp_path), TrainingLoss()
    log.on_train_begin(state)
    for value, pairs in ((0.5, 3.0), (0.25, 5.0)):
        loss.on_iteration_end(trainer_with_loss(value), state)
        state.step_stats = {"miner/num_pos_pairs": pairs}
        log.on_iteration_end(None, state)
    evaluated(state, 1, 0.75)
    state.record.update(train_loss=0.375, lr={"model": 0.1})
    log.on_epoch_end(state)
    state.start_epoch_record(2)  # not evaluated: no scalars
    log.on_epoch_end(state)
    log.on_train_end(state)

    assert scalars(tmp_path, "train/loss") == [(1, 0.5), (2, 0.25)]
    assert scalars(tmp_path, "stats/miner/num_pos_pairs") == [(1, 3.0), (2, 5.0)]
    assert scalars(tmp_path, "val/mean_average_precision_at_r") == [(1, 0.75)]
    assert scalars(tmp_path, "train/epoch_loss") == [(1, 0.375)]
    assert [(s, round(v, 6)) for s, v in scalars(tmp_path, "lr/model")] == [(1, 0.1)]


def test_steps_are_written_every_write_every_steps_and_when_training_stops(state, tmp_path):
    log, loss = TensorBoardLog(tmp_path, write_every=2), TrainingLoss()
    log.on_train_begin(state)
    for value in (0.5, 0.25, 0.125):
        loss.on_iteration_end(trainer_with_loss(value), state)
        log.on_iteration_end(None, state)
    assert scalars(tmp_path, "train/loss") == [(1, 0.5), (2, 0.25)]  # the third waits
    log.on_train_end(state)  # e.g. a NaN loss or Ctrl-C in the middle of the epoch
    assert scalars(tmp_path, "train/loss") == [(1, 0.5), (2, 0.25), (3, 0.125)]
