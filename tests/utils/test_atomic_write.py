"""The project's one atomic write: a temporary file in the same folder, then os.replace."""

import os
from functools import partial

import pytest
import torch

from metric_runner.utils.atomic_write import write_atomically


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.md"
    path.write_text("old")
    write_atomically(path, "new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["summary.md"]


def test_write_atomically_takes_a_writer_such_as_torch_save(tmp_path):
    path = tmp_path / "state.pt"
    write_atomically(path, partial(torch.save, {"w": torch.arange(3)}))
    assert torch.load(path)["w"].tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["state.pt"]


def test_a_failing_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "state.pt"
    path.write_text("old")

    def crash(temporary):
        temporary.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, crash)
    assert path.read_text() == "old"
