"""Fixtures. TEST_DTYPES (comma list, default "float32,float64") and TEST_DEVICE (default
"cpu") choose what the parametrized tests run on, as pytorch-metric-learning's users expect.
The oracle (`pml` fixture) skips a test cleanly when pytorch-metric-learning is absent."""

import random

import numpy
import pytest
import torch

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


@pytest.fixture(autouse=True)
def seeded_generators():
    """Every test starts from the same random state, so a result never depends on which tests
    pytest-xdist ran before it in the same worker."""
    random.seed(0)
    numpy.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def single_threaded_faiss():
    """faiss's OpenMP threads spin-wait on a busy machine; one thread keeps tiny inputs fast.
    Modules that search with faiss ask for it (pytest.mark.usefixtures)."""
    try:
        import faiss
    except ModuleNotFoundError:
        yield
        return
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)
