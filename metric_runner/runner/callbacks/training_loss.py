from .hooks import Callback


class TrainingLoss(Callback):
    """Counts optimizer steps and reads each step's total loss once (the one host sync the
    loggers share, as `state.step_loss`); the epoch's mean becomes the record's train_loss
    (None for the untrained evaluation)."""

    def __init__(self):
        self.total, self.steps = 0.0, 0

    def on_iteration_end(self, trainer, state):
        state.progress.global_step += 1
        state.step_loss = trainer.losses["total_loss"].item()
        self.total += state.step_loss
        self.steps += 1

    def on_epoch_end(self, state):
        state.record["global_step"] = state.progress.global_step
        state.record["train_loss"] = self.total / self.steps if self.steps else None
        self.total, self.steps = 0.0, 0
