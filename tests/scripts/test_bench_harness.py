"""The benchmarks' shared harness (scripts/bench_harness.py): timing on a fake clock, the
repeat/alternation order, peak memory, and the --out files; plus one converted script's --out."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

from bench_harness import (  # noqa: E402
    PeakMemory,
    Table,
    alternating_seconds,
    repeated_seconds,
    seconds,
    timing_summary,
    write_results,
)


class FakeClock:
    """A clock that a call of `tick(duration)` advances, so timings are known exactly."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def tick(self, duration):
        self.now += duration


def test_seconds_is_the_clock_difference_around_one_call():
    clock = FakeClock()
    assert seconds(lambda: clock.tick(2.5), clock=clock) == 2.5


def test_repeated_seconds_skips_the_warmup_and_times_each_repeat():
    clock = FakeClock()
    durations = iter([50.0, 3.0, 1.0, 2.0, 10.0])  # the first call is the warm-up

    times = repeated_seconds(lambda: clock.tick(next(durations)), repeats=4, clock=clock)

    assert times == [3.0, 1.0, 2.0, 10.0]
    assert timing_summary(times) == {"median_s": 2.5, "fastest_s": 1.0, "runs": 4}


def test_repeated_seconds_stops_once_the_budget_is_spent():
    clock = FakeClock()
    times = repeated_seconds(
        lambda: clock.tick(2.0), repeats=10, warmup=0, budget_s=5.0, clock=clock
    )
    assert times == [2.0, 2.0, 2.0]  # 6 s > 5 s after the third


def test_alternating_seconds_reverses_the_order_every_round_and_drops_the_warmup():
    clock = FakeClock()
    calls, prepared = [], []

    def call(name, duration):
        calls.append(name)
        clock.tick(duration)

    times = alternating_seconds(
        {"ours": lambda: call("ours", 1.0), "theirs": lambda: call("theirs", 4.0)},
        repeats=3,
        warmup=1,
        before_each=lambda name, round_number: prepared.append((name, round_number)),
        clock=clock,
    )

    assert calls == ["ours", "theirs", "theirs", "ours", "ours", "theirs", "theirs", "ours"]
    assert prepared[:4] == [("ours", 0), ("theirs", 0), ("theirs", 1), ("ours", 1)]
    assert times == {"ours": [1.0, 1.0, 1.0], "theirs": [4.0, 4.0, 4.0]}


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc")
def test_peak_memory_on_cpu_sees_a_block_allocation_that_is_freed_before_the_end():
    with PeakMemory("cpu") as memory:
        block = torch.ones(16 * 2**20)  # 64 MiB, touched
        del block
    assert 60 * 2**20 < memory.peak_bytes < 200 * 2**20


def test_a_table_row_must_fill_every_column():
    table = Table("t", ["case", "ms"])
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        table.add("ours")


def test_write_results_writes_the_tables_results_and_environment(tmp_path):
    table = Table("step time", ["case", "median ms", "ratio"])
    table.add("ours", "1.5", "0.75")
    table.add("PML", "2.0", "")

    json_path, markdown_path = write_results(
        tmp_path / "out" / "bench.json", "bench_x", [table], {"times_s": [0.5, 0.25]}
    )

    assert (json_path, markdown_path) == (tmp_path / "out/bench.json", tmp_path / "out/bench.md")
    document = json.loads(json_path.read_text())
    assert document["benchmark"] == "bench_x"
    assert document["command"] == ["python", *sys.argv]
    assert document["tables"] == [
        {
            "title": "step time",
            "header": ["case", "median ms", "ratio"],
            "rows": [["ours", "1.5", "0.75"], ["PML", "2.0", ""]],
        }
    ]
    assert document["results"] == {"times_s": [0.5, 0.25]}
    environment = document["environment"]
    assert torch.__version__.startswith(environment["torch"])
    assert environment["torch_threads"] == torch.get_num_threads()
    assert environment["cpu_count"] == os.cpu_count()
    assert environment["device"] == "cpu"
    markdown = markdown_path.read_text()
    assert markdown.startswith("# bench_x\n")
    assert (
        "## step time\n\n| case | median ms | ratio |\n|---|---|---|\n"
        "| ours | 1.5 | 0.75 |\n| PML | 2.0 |  |\n"
    ) in markdown
    assert f"| torch_threads | {torch.get_num_threads()} |" in markdown


def test_write_results_without_out_writes_nothing(tmp_path):
    assert write_results(None, "bench_x", [Table("t", ["a"])]) is None
    assert list(tmp_path.iterdir()) == []


def test_bench_losses_out_holds_the_printed_figures(tmp_path, pml):
    """A real (tiny) run of a converted script: the table's cells are its raw measurements."""
    out = tmp_path / "losses"
    arguments = ["--batch-sizes", "16", "--only", "TripletMarginLoss", "--repeats", "2"]
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_losses.py"), *arguments, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr

    document = json.loads(out.with_suffix(".json").read_text())
    (ours_s, ours_bytes), (pml_s, pml_bytes) = document["results"]["16 TripletMarginLoss"].values()
    expected_row = [
        16,
        "TripletMarginLoss",
        f"{ours_s * 1e3:.1f}",
        f"{pml_s * 1e3:.1f}",
        f"{ours_s / pml_s:.2f}",
        f"{ours_bytes / 2**20:.1f}",
        f"{pml_bytes / 2**20:.1f}",
        f"{ours_bytes / max(pml_bytes, 1e-12):.2f}",
    ]
    rows = document["tables"][0]["rows"]
    assert rows[0][:2] == [16, "lower bound: N×N distance fwd+bwd"]
    assert rows[1] == expected_row
    assert " ".join(expected_row[1:]) in " ".join(completed.stdout.split())  # the printed line
    assert document["environment"]["OMP_NUM_THREADS"] == "1"
    assert document["command"][1:] == [
        str(SCRIPTS / "bench_losses.py"),
        *arguments,
        "--out",
        str(out),
    ]
    assert "| " + " | ".join(map(str, expected_row)) + " |" in out.with_suffix(".md").read_text()
