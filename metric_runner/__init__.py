"""metric_runner: a deep-metric-learning library and a configuration-driven experiment runner."""

__version__ = "0.1.0"
