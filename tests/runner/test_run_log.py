"""The run log's helpers: the one atomic write, the one markdown table, the summary table."""

import os
from functools import partial

import pytest
import torch

from metric_runner.runner.run_log import markdown_table, summary_table, write_atomically


def test_markdown_table_has_a_header_rule_and_one_line_per_row():
    table = markdown_table([["name", "value"], ["a", 1], ["b", 0.5]])
    assert table == "| name | value |\n|---|---|\n| a | 1 |\n| b | 0.5 |"


def test_summary_table_is_a_markdown_table_of_the_records():
    records = {
        "untrained (epoch 0)": {"accuracies": {"val": {"r_precision": 0.25}}},
        "last (epoch 2)": {"accuracies": {"val": {"r_precision": 0.75}}},
    }
    assert summary_table(records) == (
        "| split | metric | untrained (epoch 0) | last (epoch 2) |\n"
        "|---|---|---|---|\n"
        "| val | r_precision | 0.2500 | 0.7500 |\n"
    )
    assert summary_table({}) == "No evaluation was run.\n"


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
