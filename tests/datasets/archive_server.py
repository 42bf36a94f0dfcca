"""A local HTTP server for download tests, archives of fixture trees to serve, and the checks
that two downloads left the same dataset.

The server honours `Range: bytes=N-` (206 + Content-Range), records each request, and can drop
the next response after `cut_after` bytes, so resuming and truncation are tested for real.
"""

import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path


class ArchiveServer(http.server.ThreadingHTTPServer):
    """Serves `payloads`: bytes for any path, or {path: bytes} (other paths: 404). `requests`
    records (path, Range header) of each request."""

    def __init__(self, payloads):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.payloads, self.cut_after, self.requests = payloads, None, []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    @property
    def ranges(self):
        return [requested for _, requested in self.requests]

    def payload(self, path):
        if isinstance(self.payloads, bytes):
            return self.payloads
        return self.payloads.get(path.split("?")[0])


class RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        requested = self.headers.get("Range")
        server.requests.append((self.path, requested))
        payload = server.payload(self.path)
        if payload is None:
            self.send_error(404)
            return
        start = int(requested.split("=")[1].split("-")[0]) if requested else 0
        body = payload[start:]
        self.send_response(206 if requested else 200)
        if requested:
            total = len(payload)
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:
            body, server.cut_after = body[: server.cut_after], None
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def tar_gz(folder, names):
    """A .tar.gz of the entries `names` of `folder`, stored under those names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in names:
            tar.add(Path(folder, name), arcname=name)
    return buffer.getvalue()


def zip_of(folder, names):
    """A .zip of the entries `names` of `folder` (folders recursively), paths relative to it."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name in names:
            entry = folder / name
            for path in [entry, *sorted(entry.rglob("*"))] if entry.is_dir() else [entry]:
                zipped.write(path, str(path.relative_to(folder)))
    return buffer.getvalue()


def relative_tree(root):
    """Every path under `root`, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def relative_paths(dataset):
    """The dataset's image paths relative to its root."""
    return [str(Path(p).relative_to(dataset.root)) for p in dataset.paths]


def assert_same_data(ours, theirs):
    """Both roots hold the same files (extracted, archives removed) and both datasets list the
    same images, in the same order, with the same labels."""
    assert relative_tree(ours.root) == relative_tree(theirs.root)
    assert relative_paths(ours) == relative_paths(theirs)
    assert ours.labels.tolist() == list(theirs.labels)


def fetched_alike(server):
    """Both downloads requested the same URLs in the same order (ours first, then PML's)."""
    paths = [path for path, _ in server.requests]
    return paths[: len(paths) // 2] == paths[len(paths) // 2 :]
