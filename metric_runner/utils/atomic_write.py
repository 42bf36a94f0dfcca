"""The project's one atomic write: the library (logging_presets) and the runner (checkpoints,
run logs, label maps, sweep job records) all write through it."""

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike, content: str | Callable[[Path], object]) -> None:
    """Write `content` (text, or a function that writes the file at the path it is given, such
    as `partial(torch.save, state)`) next to `path`, then rename: a crash never leaves a
    half-written `path`. The temporary file sits in the same folder, so `os.replace` is a
    rename within one file system."""
    temporary = Path(str(path) + ".tmp")
    if callable(content):
        content(temporary)
    else:
        temporary.write_text(content)
    os.replace(temporary, path)
