"""PML's module path for ProxyNCALoss (the class lives in proxy_nca_loss.py)."""

from .nca_loss import NCALoss
from .proxy_nca_loss import ProxyNCALoss

__all__ = ["NCALoss", "ProxyNCALoss"]
