"""Downloads against a local HTTP server: checksums, resuming, atomic extraction, no network."""

import errno
import hashlib
import io
import random
import socket
import tarfile
import zipfile

import pytest
from tqdm import tqdm

from metric_runner.datasets import CUB, StanfordOnlineProducts, cub, download
from metric_runner.datasets.download import (
    DownloadError,
    Resource,
    check_members,
    download_and_extract,
    download_file,
    extract_atomically,
)
from tests.datasets.archive_server import RangeHandler, relative_tree, tar_gz, zip_of
from tests.datasets.fixtures import make_cub, make_sop


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


def closed_port_url(path):
    """A URL on 127.0.0.1 that nothing listens on: a connection to it is refused at once."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def test_without_network_the_error_names_url_layout_and_place(tmp_path):
    url = closed_port_url("/data.tgz")
    with pytest.raises(DownloadError) as error:
        download_file(url, tmp_path / "data.tgz", "0" * 32, layout="data/a.txt (a file)")
    message = str(error.value)
    assert url in message and str(tmp_path / "data.tgz") in message
    assert "the expected layout is: data/a.txt (a file)" in message


def test_without_network_a_dataset_says_where_to_put_its_files(tmp_path, monkeypatch):
    url = closed_port_url("/CUB_200_2011.tgz")
    monkeypatch.setattr(CUB, "DOWNLOAD_URL", url)
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as error:
        CUB(root, download=True)
    message = str(error.value)
    assert f"cannot download {url} (" in message
    assert f"put it at {root / 'CUB_200_2011.tgz'} (or its extracted contents under {root})" in (
        message
    )
    assert message.endswith("the expected layout is: " + "; ".join(CUB.LAYOUT))
    assert "CUB_200_2011/images/<class folder>/<image>.jpg" in message
    assert list(root.iterdir()) == []


def test_the_progress_bar_shows_the_file_and_its_size(tmp_path, serve, cub_archive, capsys):
    payload, md5 = cub_archive
    url = serve(payload).url("/CUB_200_2011.tgz")
    download_file(url, tmp_path / "CUB_200_2011.tgz", md5)
    size = tqdm.format_sizeof(len(payload))  # how the bar writes a byte count (unit_scale)
    bar = capsys.readouterr().err
    assert "CUB_200_2011.tgz: 100%" in bar
    assert f"| {size}/{size} [" in bar


def test_a_resumed_download_s_bar_starts_at_the_bytes_already_there(
    tmp_path, monkeypatch, serve, cub_archive
):
    bars = []

    class RecordedBar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(download, "tqdm", RecordedBar)
    payload, md5 = cub_archive
    server = serve(payload)
    server.cut_after = 1000
    url = server.url("/CUB_200_2011.tgz")
    with pytest.raises(DownloadError, match="interrupted after 1000 of"):
        download_file(url, tmp_path / "CUB_200_2011.tgz", md5)
    download_file(url, tmp_path / "CUB_200_2011.tgz", md5)
    # (total, where the bar started, where it ended) of the interrupted and the resumed download
    assert [(bar.total, bar.initial, bar.n) for bar in bars] == [
        (len(payload), 0, 1000),
        (len(payload), 1000, len(payload)),
    ]
    assert [bar.desc for bar in bars] == ["CUB_200_2011.tgz"] * 2
    assert (tmp_path / "CUB_200_2011.tgz").read_bytes() == payload


def two_member_archive(kind, broken):
    """A .tgz, .tar or .zip of CUB_200_2011/images.txt (small) and then a 200 kB incompressible
    image; `broken`: the first member is whole and the second is cut short (tar) or has
    corrupt bytes (zip), as a truncated or damaged download that the server sent as complete."""
    members = {
        "CUB_200_2011/images.txt": b"1 001.Albatross/a.jpg\n",
        "CUB_200_2011/images/001.Albatross/a.jpg": random.Random(0).randbytes(200_000),
    }
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
            for name, data in members.items():
                zipped.writestr(name, data)
        payload = bytearray(buffer.getvalue())
        if broken:  # flips bytes inside the image's data: its CRC no longer matches
            start = payload.index(b"a.jpg") + 1000
            payload[start : start + 50] = bytes(50)
        return bytes(payload)
    with tarfile.open(fileobj=buffer, mode="w:gz" if kind == "tgz" else "w") as tarred:
        for name, data in members.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tarred.addfile(member, io.BytesIO(data))
    payload = buffer.getvalue()
    return payload[: len(payload) * 2 // 3] if broken else payload


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("tgz", "EOFError: Compressed file ended before the end-of-stream marker was reached"),
        ("tar", "ReadError: unexpected end of data"),
        ("zip", "BadZipFile: Bad CRC-32 for file 'CUB_200_2011/images/001.Albatross/a.jpg'"),
    ],
)
def test_an_archive_broken_partway_is_deleted_and_leaves_nothing(tmp_path, serve, kind, reason):
    # No checksum is published (as for SOP and Cars196): extracting is the only check.
    server = serve(two_member_archive(kind, broken=True))
    url = server.url(f"/data.{kind}")
    resource = Resource(url, None, f"data.{kind}", creates="CUB_200_2011")
    (tmp_path / "other_dataset").mkdir()
    with pytest.raises(DownloadError) as error:
        download_and_extract(resource, tmp_path)
    archive = tmp_path / f"data.{kind}"
    assert str(error.value) == (
        f"{archive} (from {url}) cannot be extracted: {reason} (the file is truncated or "
        f"corrupt). The file was deleted; run again to download it afresh, or place the file "
        f"by hand at {archive}"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["other_dataset"]  # no staging folder either
    assert list((tmp_path / "other_dataset").iterdir()) == []
    server.payloads = two_member_archive(kind, broken=False)
    download_and_extract(resource, tmp_path)
    assert server.ranges == [None, None]  # downloaded afresh, not resumed onto the bad file
    assert relative_tree(tmp_path) == [
        "CUB_200_2011",
        "CUB_200_2011/images",
        "CUB_200_2011/images.txt",
        "CUB_200_2011/images/001.Albatross",
        "CUB_200_2011/images/001.Albatross/a.jpg",
        "other_dataset",
    ]
    assert (tmp_path / "CUB_200_2011/images/001.Albatross/a.jpg").stat().st_size == 200_000


def test_an_archive_with_an_entry_outside_the_root_is_refused_and_deleted(tmp_path, serve):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tarred:
        tarred.addfile(tarfile.TarInfo("../outside.txt"), io.BytesIO(b""))
    root = tmp_path / "root"
    root.mkdir()
    url = serve(buffer.getvalue()).url("/data.tgz")
    with pytest.raises(DownloadError) as error:
        download_and_extract(Resource(url, None, "data.tgz", creates="data"), root)
    # Python's data filter or, without it, our own check refuses the entry
    assert "'../outside.txt'" in str(error.value)
    assert "unsafe" in str(error.value) and "The file was deleted" in str(error.value)
    assert list(root.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_a_disk_error_while_extracting_keeps_the_archive(tmp_path, monkeypatch):
    def disk_full(archive, folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "unpack", disk_full)
    (tmp_path / "data.tgz").write_bytes(b"a good archive")
    resource = Resource("http://127.0.0.1:9/data.tgz", None, "data.tgz", creates="data")
    with pytest.raises(OSError, match="No space left on device"):
        download_and_extract(resource, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["data.tgz"]


class WebPageHandler(RangeHandler):
    """Answers as Google Drive does when it wants a browser: 200, Content-Type text/html."""

    def end_headers(self):
        self.send_header("Content-Type", "text/html; charset=utf-8")
        super().end_headers()


GOOGLE_DRIVE_NOTICE = (
    b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
    b"<body>Google Drive can't scan this file for viruses.</body></html>"
)


@pytest.fixture(scope="module")
def sop_zip(tmp_path_factory):
    return zip_of(make_sop(tmp_path_factory.mktemp("sop_tree")), ["Stanford_Online_Products"])


def test_a_web_page_instead_of_the_archive_is_refused_and_not_kept(
    tmp_path, monkeypatch, serve, sop_zip
):
    server = serve(GOOGLE_DRIVE_NOTICE)
    server.RequestHandlerClass = WebPageHandler
    url = server.url("/download?id=1TclrpQOF&export=download")
    monkeypatch.setattr(StanfordOnlineProducts, "DOWNLOAD_URL", url)
    with pytest.raises(DownloadError) as error:
        StanfordOnlineProducts(tmp_path, download=True)
    message = str(error.value)
    assert message.startswith(
        f"{url} answered with a web page (Content-Type text/html) instead of the file; "
        "the site wants a browser. Open the URL in a browser, download the file there and put "
        f"it at {tmp_path / 'Stanford_Online_Products.zip'} (or its extracted contents under "
        f"{tmp_path})"
    )
    assert "Stanford_Online_Products/Ebay_train.txt and" in message  # the expected layout
    assert list(tmp_path.iterdir()) == []  # no .part of HTML for a later call to resume
    server.RequestHandlerClass, server.payloads = RangeHandler, sop_zip
    assert len(StanfordOnlineProducts(tmp_path, split="train", download=True)) == sum(
        1 + c % 3 for c in range(1, 9)
    )
    assert server.ranges == [None, None]


def test_an_html_page_saved_as_the_archive_is_deleted_and_fetched_again(
    tmp_path, monkeypatch, serve, sop_zip
):
    # A page saved in the archive's place (by hand, or served without a Content-Type) used to
    # fail the same way on every call without anything being downloaded again.
    server = serve(sop_zip)
    url = server.url("/sop.zip")
    monkeypatch.setattr(StanfordOnlineProducts, "DOWNLOAD_URL", url)
    archive = tmp_path / "Stanford_Online_Products.zip"
    archive.write_bytes(GOOGLE_DRIVE_NOTICE)
    with pytest.raises(DownloadError) as error:
        StanfordOnlineProducts(tmp_path, download=True)
    assert str(error.value) == (
        f"{archive} (from {url}) cannot be extracted: it is an HTML page, not an archive (the "
        "site served a web page, such as a sign-in or download-warning page, in place of the "
        f"file). The file was deleted; run again to download it afresh, or place the file by "
        f"hand at {archive}"
    )
    assert list(tmp_path.iterdir()) == [] and server.ranges == []
    assert len(StanfordOnlineProducts(tmp_path, split="test", download=True)) == sum(
        1 + c % 3 for c in range(9, 15)
    )
    assert server.ranges == [None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Stanford_Online_Products"]


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
