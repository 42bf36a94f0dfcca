"""Downloads that are resumable and verified, and extraction that is atomic.

A file is streamed into `<name>.part` (a later call continues it with an HTTP Range request),
checked against its published MD5, and only then renamed to its final name. An archive is
extracted into a hidden staging folder next to the data and its top-level entries are moved into
place with `os.replace`, so a half-finished download or extraction never looks like a dataset.
"""

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
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
        extract_atomically(destination, root)
        destination.unlink()


def download_file(url, destination, md5, layout=""):
    """Stream `url` to `destination`, continuing `destination.part` if an earlier download was
    interrupted; the file gets its final name only once its MD5 matches `md5` (when not None)."""
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    offset = partial.stat().st_size if partial.exists() else 0
    response = open_url(url, offset, destination, layout)
    if response is not None:
        with response:
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
        f"put it at {destination} (or its extracted contents under {destination.parent})"
        + (f"; the expected layout is: {layout}" if layout else "")
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
            raise DownloadError(f"{archive}: refusing to extract {member.name!r} (unsafe entry)")


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
        raise DownloadError(f"{archive} is neither a zip nor a tar archive")
