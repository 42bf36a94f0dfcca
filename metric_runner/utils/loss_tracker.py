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
            # x * 1 is x, bit for bit: the step needs no extra tensor op (and backward node).
            if name not in exclude_loss and weight != 1:
                self.losses[name] = self.losses[name] * weight

    def get_total_loss(self, exclude_loss=(TOTAL_LOSS,)):
        """The sum in the losses' order, started from the first (not from 0: one tensor op
        less, and a single loss is its own total)."""
        terms = [loss for name, loss in self.losses.items() if name not in exclude_loss]
        self.losses[TOTAL_LOSS] = sum(terms[1:], terms[0]) if terms else 0

    def set_loss_weights(self, loss_weight_dict):
        for name in self.losses:
            self.loss_weights[name] = loss_weight_dict.get(name, 1.0)

    def update(self, loss_weight_dict):
        self.set_loss_weights(loss_weight_dict)
        self.weight_the_losses()
        self.get_total_loss()
