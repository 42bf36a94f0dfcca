from .hooks import Callback


def current_rates(optimizer):
    return {group["name"]: group["lr"] for group in optimizer.param_groups}


class LearningRates(Callback):
    """The record's lr: {parameter group name: rate} as the epoch's last step used it (before
    the epoch's scheduler step), or the current rates for the untrained evaluation."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.trained_with = None

    def on_iteration_end(self, trainer, state):
        self.trained_with = current_rates(self.optimizer)

    def on_epoch_end(self, state):
        state.record["lr"] = self.trained_with or current_rates(self.optimizer)
        self.trained_with = None
