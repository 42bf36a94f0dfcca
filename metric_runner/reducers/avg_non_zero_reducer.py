from .threshold_reducer import ThresholdReducer


class AvgNonZeroReducer(ThresholdReducer):
    """The mean over positive losses only, so easy (zero) tuples do not dilute the gradient."""

    def __init__(self, **kwargs):
        super().__init__(low=0, **kwargs)
