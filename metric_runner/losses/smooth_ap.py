"""PML's module path for SmoothAPLoss (the class lives in smooth_ap_loss.py)."""

from .smooth_ap_loss import SmoothAPLoss

__all__ = ["SmoothAPLoss"]
