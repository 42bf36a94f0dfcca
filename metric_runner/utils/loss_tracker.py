"""LossTracker: the trainers' dict of named (weighted) losses and their sum, "total_loss"."""

TOTAL_LOSS = "total_loss"


class LossTracker:
    """Holds `losses` (name -> tensor, 0 until computed) and `loss_weights` (name -> number).

    `update(weights)` sets the weights (1.0 where a name is not given), multiplies every loss by
    its weight and stores their sum as `losses["total_loss"]`. The dict is mutated in place, so a
    trainer and its hooks can share it.
    """

    def __init__(self, loss_names):
        names = list(dict.fromkeys(loss_names))
        if TOTAL_LOSS not in names:
            names.append(TOTAL_LOSS)
        self.losses = {name: 0 for name in names}
        self.loss_weights = {name: 1 for name in names}

    def weight_the_losses(self, exclude_loss=(TOTAL_LOSS,)):
        for name, weight in self.loss_weights.items():
            if name not in exclude_loss:
                self.losses[name] = self.losses[name] * weight

    def get_total_loss(self, exclude_loss=(TOTAL_LOSS,)):
        total = 0
        for name, loss in self.losses.items():
            if name not in exclude_loss:
                total = total + loss
        self.losses[TOTAL_LOSS] = total

    def set_loss_weights(self, loss_weight_dict):
        for name in self.losses:
            self.loss_weights[name] = loss_weight_dict.get(name, 1.0)

    def update(self, loss_weight_dict):
        self.set_loss_weights(loss_weight_dict)
        self.weight_the_losses()
        self.get_total_loss()
