import pytest


@pytest.fixture
def pml_trainers():
    """PML's trainers, the oracle (skips cleanly when pytorch-metric-learning is absent)."""
    pytest.importorskip("pytorch_metric_learning")
    return pytest.importorskip("pytorch_metric_learning.trainers")
