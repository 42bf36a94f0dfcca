"""PML's module path for ThresholdConsistentMarginLoss (the class lives in threshold_consistent_margin_loss.py)."""

from .threshold_consistent_margin_loss import ThresholdConsistentMarginLoss

__all__ = ["ThresholdConsistentMarginLoss"]
