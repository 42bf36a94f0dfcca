from torch.utils.tensorboard import SummaryWriter

from .hooks import Callback


def write_evaluation(writer, record):
    """An evaluation record as TensorBoard scalars at its epoch: <split>/<metric>,
    lr/<group>, train/epoch_loss."""
    for split, metrics in record["accuracies"].items():
        for metric, value in metrics.items():
            writer.add_scalar(f"{split}/{metric}", value, record["epoch"])
    for group, lr in record.get("lr", {}).items():
        writer.add_scalar(f"lr/{group}", lr, record["epoch"])
    if record.get("train_loss") is not None:
        writer.add_scalar("train/epoch_loss", record["train_loss"], record["epoch"])
    writer.flush()


class TensorBoardLog(Callback):
    """TensorBoard events in `folder`: train/loss and stats/<component>/... per step, the
    evaluations per epoch."""

    def __init__(self, folder):
        self.folder = folder
        self.writer = None

    def on_train_begin(self, state):
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def on_iteration_end(self, trainer, state):
        step = state.progress.global_step
        self.writer.add_scalar("train/loss", state.step_loss, step)
        for name, value in state.step_stats.items():
            self.writer.add_scalar(f"stats/{name}", value, step)

    def on_epoch_end(self, state):
        if state.evaluated:
            write_evaluation(self.writer, state.record)

    def on_train_end(self, state):
        if self.writer is not None:
            self.writer.close()
