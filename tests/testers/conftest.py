import pytest


@pytest.fixture(autouse=True)
def testers_search_with_one_faiss_thread(single_threaded_faiss):
    """Every tester test searches with faiss (see tests/conftest.py)."""
