import torch


class BaseLossWrapper(torch.nn.Module):
    """A module that wraps one loss and only accepts the losses its algorithm is defined for
    (`supported_losses`, by class name; subclasses of a supported loss are accepted too)."""

    def __init__(self, loss, **kwargs):
        super().__init__(**kwargs)
        self.check_loss_support(self.supported_class_name(loss))
        self.loss = loss

    @staticmethod
    def supported_losses():
        raise NotImplementedError("A loss wrapper must list the losses it supports.")

    @classmethod
    def check_loss_support(cls, loss_name):
        if loss_name not in cls.supported_losses():
            raise ValueError(
                f"{cls.__name__} does not support {loss_name}; wrap one of: "
                f"{', '.join(sorted(cls.supported_losses()))}."
            )

    @classmethod
    def supported_class_name(cls, loss):
        """The name of the loss's class, or of the first supported class it derives from."""
        names = [klass.__name__ for klass in type(loss).__mro__]
        return next((name for name in names if name in cls.supported_losses()), names[0])
