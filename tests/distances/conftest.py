import pytest


@pytest.fixture
def pml_distances():
    """pytorch_metric_learning.distances, the test oracle; skips when it is not installed."""
    return pytest.importorskip("pytorch_metric_learning.distances")
