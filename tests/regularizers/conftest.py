import pytest


@pytest.fixture
def pml_regularizers():
    """pytorch_metric_learning.regularizers, the test oracle; skips when it is not installed."""
    return pytest.importorskip("pytorch_metric_learning.regularizers")


@pytest.fixture
def pml_distances():
    return pytest.importorskip("pytorch_metric_learning.distances")


@pytest.fixture
def pml_reducers():
    return pytest.importorskip("pytorch_metric_learning.reducers")
