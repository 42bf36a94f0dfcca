"""Downloads against a local HTTP server: checksums, resuming, atomic extraction, no network."""

import hashlib
import socket
import tarfile

import pytest

from metric_runner.datasets import CUB, cub
from metric_runner.datasets.download import (
    DownloadError,
    Resource,
    check_members,
    download_and_extract,
    download_file,
    extract_atomically,
)
from tests.datasets.archive_server import tar_gz
from tests.datasets.fixtures import make_cub


@pytest.fixture(scope="module")
def cub_archive(tmp_path_factory):
    """A CUB_200_2011.tgz of a 6-class tree, and its MD5."""
    payload = tar_gz(make_cub(tmp_path_factory.mktemp("cub_tree"), num_classes=6), ["CUB_200_2011"])
    return payload, hashlib.md5(payload).hexdigest()


def use_resource(monkeypatch, url, md5):
    # PML's way to point a dataset at a mirror: its DOWNLOAD_URL class attribute.
    monkeypatch.setattr(CUB, "DOWNLOAD_URL", url)
    monkeypatch.setattr(cub, "ARCHIVE_MD5", md5)


def test_download_verifies_extracts_and_cleans_up(tmp_path, monkeypatch, serve, cub_archive):
    payload, md5 = cub_archive
    server = serve(payload)
    url = server.url("/CUB_200_2011.tgz")
    use_resource(monkeypatch, url, md5)
    dataset = CUB(tmp_path / "data", split="train", download=True)
    assert sorted(set(dataset.labels.tolist())) == [1, 2, 3, 4, 5, 6]
    assert len(CUB(tmp_path / "data", split="train+test")) == sum(1 + c % 3 for c in range(1, 7))
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["CUB_200_2011"]
    CUB(tmp_path / "data", download=True)  # already there: nothing is fetched again
    assert server.ranges == [None]


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path, monkeypatch, serve, cub_archive):
    payload, md5 = cub_archive
    url = serve(payload).url("/CUB_200_2011.tgz")
    use_resource(monkeypatch, url, "0" * 32)
    with pytest.raises(DownloadError, match=f"MD5 is {md5}, the published one is 0{{32}}"):
        CUB(tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_resumes_with_a_range_request(
    tmp_path, monkeypatch, serve, cub_archive
):
    payload, md5 = cub_archive
    server = serve(payload)
    url = server.url("/CUB_200_2011.tgz")
    server.cut_after = len(payload) // 3
    use_resource(monkeypatch, url, md5)
    with pytest.raises(DownloadError, match="interrupted after .* run again to resume"):
        CUB(tmp_path, download=True)
    partial = tmp_path / "CUB_200_2011.tgz.part"
    assert partial.stat().st_size == len(payload) // 3
    assert not (tmp_path / "CUB_200_2011").exists()  # a partial download is no dataset
    assert len(CUB(tmp_path, split="train", download=True)) == sum(1 + c % 3 for c in range(1, 7))
    assert server.ranges == [None, f"bytes={len(payload) // 3}-"]


def test_without_a_published_checksum_a_truncated_file_is_resumed_not_used(
    tmp_path, serve, cub_archive
):
    payload, _ = cub_archive
    server = serve(payload)
    server.cut_after = 100
    resource = Resource(server.url("/a.tgz"), None, "a.tgz", creates="CUB_200_2011")
    with pytest.raises(DownloadError, match="interrupted after 100 of"):
        download_and_extract(resource, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["a.tgz.part"]
    download_and_extract(resource, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["CUB_200_2011"]  # extracted, archive gone
    download_and_extract(resource, tmp_path)  # its contents are there: nothing is fetched
    assert server.ranges == [None, "bytes=100-"]


def test_without_network_the_error_names_url_layout_and_place(tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.tgz"
    with pytest.raises(DownloadError) as error:
        download_file(url, tmp_path / "data.tgz", "0" * 32, layout="data/a.txt (a file)")
    message = str(error.value)
    assert url in message and str(tmp_path / "data.tgz") in message
    assert "the expected layout is: data/a.txt (a file)" in message


def test_failed_extraction_leaves_no_half_dataset(tmp_path):
    archive = tmp_path / "broken.tgz"
    archive.write_bytes(b"not an archive")
    with pytest.raises(DownloadError, match="neither a zip nor a tar archive"):
        extract_atomically(archive, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["broken.tgz"]


@pytest.mark.parametrize(
    ("name", "kind", "safe"),
    [
        ("CUB_200_2011/images.txt", tarfile.REGTYPE, True),
        ("CUB_200_2011", tarfile.DIRTYPE, True),
        ("../outside.txt", tarfile.REGTYPE, False),
        ("/etc/passwd", tarfile.REGTYPE, False),
        ("CUB_200_2011/link", tarfile.SYMTYPE, False),
    ],
)
def test_tar_entries_are_checked_where_python_has_no_data_filter(name, kind, safe):
    member = tarfile.TarInfo(name)
    member.type = kind
    if safe:
        check_members([member], "a.tgz")
    else:
        with pytest.raises(DownloadError, match=f"refusing to extract '{name}'"):
            check_members([member], "a.tgz")
