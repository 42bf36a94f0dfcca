"""PML's module path for TwoStreamMetricLoss (the class lives in two_stream_metric_loss.py)."""

from .two_stream_metric_loss import TwoStreamMetricLoss

__all__ = ["TwoStreamMetricLoss"]
