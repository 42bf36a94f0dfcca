import pytest


@pytest.fixture(autouse=True, scope="package")
def single_threaded_faiss():
    """faiss's OpenMP threads spin-wait on a busy machine; one thread keeps tiny inputs fast."""
    try:
        import faiss
    except ModuleNotFoundError:
        yield
        return
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)
