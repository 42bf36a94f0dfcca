from .threshold_reducer import ThresholdReducer


class AvgNonZeroReducer(ThresholdReducer):
    """The mean over positive losses only, mean({l : l > 0}), so easy (zero) tuples do not
    dilute the gradient (as in Hermans et al. 2017's "batch all" triplet loss)."""

    def __init__(self, **kwargs):
        super().__init__(low=0, **kwargs)
