import pytest

from tests.datasets.archive_server import ArchiveServer


@pytest.fixture
def pml_datasets():
    """pytorch-metric-learning's datasets, the oracle for splits, order and labels."""
    pml = pytest.importorskip("pytorch_metric_learning")
    return pytest.importorskip(f"{pml.__name__}.datasets")


@pytest.fixture
def serve():
    """serve(payloads) -> a running ArchiveServer on 127.0.0.1, shut down after the test."""
    servers = []

    def start(payloads):
        servers.append(ArchiveServer(payloads))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def download_with_both(serve, monkeypatch, tmp_path):
    """download_with_both(ours, theirs, archives, split) serves `archives` ({URL attribute:
    (url path, payload)}), points both classes' URL attributes at them and builds each with
    download=True into a fresh root. Returns (ours, theirs, server)."""

    def run(our_class, their_class, archives, split="train"):
        server = serve(dict(archives.values()))
        built = []
        for side, dataset_class in (("ours", our_class), ("theirs", their_class)):
            for attribute, (path, _) in archives.items():
                monkeypatch.setattr(dataset_class, attribute, server.url(path))
            built.append(dataset_class(str(tmp_path / side), split=split, download=True))
        return (*built, server)

    return run
