import pytest


@pytest.fixture
def pml_reducers():
    """pytorch_metric_learning.reducers, the test oracle; skips when it is not installed."""
    return pytest.importorskip("pytorch_metric_learning.reducers")
