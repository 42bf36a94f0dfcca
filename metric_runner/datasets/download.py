"""Downloads that are resumable and verified, and extraction that is atomic.

A file is streamed into `<name>.part` (a later call continues it with an HTTP Range request),
checked against its published MD5, and only then renamed to its final name. An archive is
extracted into a hidden staging folder next to the data and its top-level entries are moved into
place with `os.replace`, so a half-finished download or extraction never looks like a dataset.
An archive that cannot be extracted is deleted, so that the next call downloads it afresh (most
sources publish no checksum, so extracting is the only check such a file gets).
"""

import hashlib
import http.client
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Resource:
    """One published file: where it is, its MD5 (None where the publisher gives none: the file
    is then checked only for completeness and by extracting it), the name to save it as, the
    top-level entry its extraction creates under the root (present: nothing to fetch), and
    whether it is an archive to extract (and then delete)."""

    url: str
    md5: str | None
    filename: str
    creates: str = ""
    extract: bool = True


class DownloadError(ValueError):
    """A download that failed or did not match its checksum."""


class BadArchiveError(DownloadError):
    """An archive that is not a zip or tar file, or holds an entry unsafe to extract."""


# What reading a truncated or corrupt zip/tar (or its gzip/bz2/xz stream) raises.
ARCHIVE_ERRORS = (
    BadArchiveError,
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
)


def download_and_extract(resource, root, layout=""):
    """Fetch `resource` into the folder `root` (resuming a partial file), extract it there and
    delete the archive; nothing is fetched when what it creates is already there."""
    root = Path(root)
    if resource.creates and (root / resource.creates).exists():
        return
    destination = root / resource.filename
    if not destination.exists():
        download_file(resource.url, destination, resource.md5, layout)
    if resource.extract:
        extract_or_delete(destination, root, resource.url)
        destination.unlink()


def extract_or_delete(archive, root, url):
    """Extract `archive` into `root`; one that cannot be read is deleted (kept, it would be
    extracted, and fail, again on every later call) and the error says how to get a good one."""
    try:
        extract_atomically(archive, root)
    except ARCHIVE_ERRORS as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise  # the disk or the folder failed (full, read-only), not the archive: keep it
        problem = describe_bad_archive(archive, error)
        archive.unlink(missing_ok=True)
        raise BadArchiveError(
            f"{archive} (from {url}) cannot be extracted: {problem}. The file was deleted; run "
            f"again to download it afresh, or place the file by hand at {archive}"
        ) from None


def describe_bad_archive(archive, error):
    with open(archive, "rb") as file:
        start = file.read(512).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return (
            "it is an HTML page, not an archive (the site served a web page, such as a sign-in "
            "or download-warning page, in place of the file)"
        )
    if isinstance(error, BadArchiveError):
        return str(error)
    if isinstance(error, getattr(tarfile, "FilterError", ())):  # Python's own unsafe-entry check
        return f"{type(error).__name__}: {error} (an entry unsafe to extract)"
    return f"{type(error).__name__}: {error} (the file is truncated or corrupt)"


def download_file(url, destination, md5, layout=""):
    """Stream `url` to `destination`, continuing `destination.part` if an earlier download was
    interrupted; the file gets its final name only once its MD5 matches `md5` (when not None)."""
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    offset = partial.stat().st_size if partial.exists() else 0
    response = open_url(url, offset, destination, layout)
    if response is not None:
        with response:
            refuse_web_page(response, url, destination, layout)
            if offset and response.status != 206:  # the server ignored the Range: start over
                offset = 0
            stream_to(response, partial, offset, url)
    actual = file_md5(partial) if md5 is not None else None
    if actual != md5:
        partial.unlink()
        raise DownloadError(
            f"{url}: the downloaded file's MD5 is {actual}, the published one is {md5}; "
            "the file was deleted — run again to download it afresh"
        )
    os.replace(partial, destination)


def open_url(url, offset, destination, layout):
    """The HTTP response from `offset` on; None when the partial file is already whole."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=TIMEOUT_SECONDS
        )
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to fetch: the checksum decides
            return None
        reason = f"HTTP {error.code} {error.reason}"
    except (urllib.error.URLError, OSError) as error:
        reason = str(getattr(error, "reason", error))
    raise DownloadError(
        f"cannot download {url} ({reason}). Without network access, download it elsewhere and "
        + manual_route(destination, layout)
    )


def manual_route(destination, layout):
    return f"put it at {destination} (or its extracted contents under {destination.parent})" + (
        f"; the expected layout is: {layout}" if layout else ""
    )


def refuse_web_page(response, url, destination, layout):
    """No file fetched here is a web page: an HTML answer is a page asking for a browser (Google
    Drive's virus-scan or quota notice, a sign-in). It is refused before anything is written,
    so no `.part` holds HTML that a later call would resume."""
    content_type = response.headers.get_content_type()
    if content_type == "text/html":
        raise DownloadError(
            f"{url} answered with a web page (Content-Type {content_type}) instead of the file; "
            "the site wants a browser. Open the URL in a browser, download the file there and "
            + manual_route(destination, layout)
        )


def stream_to(response, partial, offset, url):
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length is not None else None
    with (
        open(partial, "ab" if offset else "wb") as file,
        tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=partial.stem) as bar,
    ):
        try:
            while chunk := response.read(CHUNK_BYTES):
                file.write(chunk)
                bar.update(len(chunk))
        except (http.client.IncompleteRead, OSError) as error:
            raise DownloadError(
                f"download of {url} was interrupted after {file.tell()} bytes ({error!r}); "
                "run again to resume it"
            ) from None
    if total is not None and partial.stat().st_size < total:
        raise DownloadError(
            f"download of {url} was interrupted after {partial.stat().st_size} of {total} "
            "bytes; run again to resume it"
        )


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def extract_atomically(archive, root):
    """Extract `archive` into `root`: first into a staging folder inside `root`, then each
    top-level entry is moved into place in one rename (entries already there are kept)."""
    root = Path(root)
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=root))
    try:
        unpack(Path(archive), staging)
        for entry in staging.iterdir():
            target = root / entry.name
            if not target.exists():
                os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_members(members, archive):
    for member in members:
        parts = Path(member.name).parts
        if (
            Path(member.name).is_absolute()
            or ".." in parts
            or not (member.isfile() or member.isdir())
        ):
            raise BadArchiveError(f"{archive}: refusing to extract {member.name!r} (unsafe entry)")


def unpack(archive, folder):
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(folder)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tarred:
            if hasattr(tarfile, "data_filter"):
                # Refuses absolute paths, links out of the folder and device files.
                tarred.extractall(folder, filter="data")
            else:  # Python before 3.10.12 / 3.11.4: the same checks by hand
                check_members(tarred.getmembers(), archive)
                tarred.extractall(folder)
    else:
        raise BadArchiveError(f"{archive} is neither a zip nor a tar archive")
