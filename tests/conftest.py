"""Fixtures. TEST_DTYPES (comma list, default "float32,float64") and TEST_DEVICE (default
"cpu") choose what the parametrized tests run on, as pytorch-metric-learning's users expect.
The oracle (`pml` fixture) skips a test cleanly when pytorch-metric-learning is absent."""

import pytest

from tests.helpers import TEST_DEVICE, TEST_DTYPES


@pytest.fixture(params=TEST_DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def dtype(request):
    return request.param


@pytest.fixture
def device():
    return TEST_DEVICE


@pytest.fixture
def pml():
    """pytorch-metric-learning, the test oracle (optional `dev` extra)."""
    return pytest.importorskip("pytorch_metric_learning")
