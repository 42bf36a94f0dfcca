"""What every benchmark in scripts/ shares: timing, peak memory, the environment block, and the
`--out PATH` files (PATH.json with every number, PATH.md with the same tables in markdown).

    from bench_harness import Table, add_out_argument, repeated_seconds, write_results

    parser = argparse.ArgumentParser()
    add_out_argument(parser)
    ...
    times = repeated_seconds(step, repeats=5, device=device)   # warm-up first, then 5 runs
    table = Table("step time", ["case", "median ms"])
    table.add("ours", f"{statistics.median(times) * 1e3:.1f}")
    print(table.markdown())
    write_results(args.out, "bench_x", [table], {"times_s": times}, device=device)

Timings synchronize CUDA before the clock is read, so they measure the work, not its launch.
Scripts run as `python scripts/NAME.py`, which puts this folder on sys.path.
"""

import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from metric_runner.runner.run_log import markdown_table

Clock = Callable[[], float]
# Library versions the environment block reports, when installed.
REPORTED_PACKAGES = ("torch", "numpy", "faiss-cpu", "faiss-gpu", "pytorch-metric-learning")
# The command that started the benchmark, read on import: a script may rewrite sys.argv later
# (bench_sweep.py launches metric-run through it).
COMMAND = ["python", *sys.argv]


# ---- time ----


def synchronize(device: str | torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU does not)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def seconds(
    function: Callable[[], object],
    device: str | torch.device = "cpu",
    clock: Clock = time.perf_counter,
) -> float:
    """Seconds one call of `function` takes, its device work included."""
    synchronize(device)
    start = clock()
    function()
    synchronize(device)
    return clock() - start


def repeated_seconds(
    function: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    budget_s: float = math.inf,
    clock: Clock = time.perf_counter,
) -> list[float]:
    """The seconds of `repeats` timed calls after `warmup` untimed ones (one-time kernel and
    buffer set-up); stops early once the timed calls add up to more than `budget_s`."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        times.append(seconds(function, device, clock))
        if sum(times) > budget_s:
            break
    return times


def alternating_seconds(
    functions: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    before_each: Callable[[str, int], object] | None = None,
    clock: Clock = time.perf_counter,
) -> dict[str, list[float]]:
    """Times each of `functions` once per round, `warmup` untimed rounds then `repeats` timed
    ones, the order reversed every other round: machine noise and cache warmth hit every
    function alike, so their ratio is steadier than timing one after the other.
    `before_each(name, round)`, when given, runs untimed before each call (reset a model, build
    a trainer); rounds count from 0, the warm-up rounds first."""
    times = {name: [] for name in functions}
    names = list(functions)
    for round_number in range(warmup + repeats):
        for name in names if round_number % 2 == 0 else names[::-1]:
            if before_each is not None:
                before_each(name, round_number)
            elapsed = seconds(functions[name], device, clock)
            if round_number >= warmup:
                times[name].append(elapsed)
    return times


def timing_summary(times: Sequence[float]) -> dict[str, float]:
    """The figures a table shows of repeated timings: median (the headline on a shared
    machine), fastest, and how many runs."""
    return {"median_s": statistics.median(times), "fastest_s": min(times), "runs": len(times)}


# ---- memory ----


class PeakMemory:
    """`with PeakMemory(device) as memory: ...` sets `memory.peak_bytes`: the block's peak memory
    above what was held when it started. CUDA: the caching allocator's peak. CPU (Linux): the
    process's peak resident set, reset at the start through /proc/self/clear_refs; run the
    script with MALLOC_MMAP_THRESHOLD_ set low (see bench_losses.py) so that freed memory goes
    back to the system between measurements."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.peak_bytes = 0

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
        else:
            release_freed_memory()
            with open("/proc/self/clear_refs", "w") as file:
                file.write("5")  # resets the peak resident set size (VmHWM) to the current one
            self.start_bytes = process_status_bytes("VmRSS")
        return self

    def __exit__(self, *exc_info: object) -> bool:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self.start_bytes
        else:
            self.peak_bytes = process_status_bytes("VmHWM") - self.start_bytes
        return False


def release_freed_memory() -> None:
    """Hand glibc's freed heap back to the system, so the resident set is what is in use."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)


def process_status_bytes(field_name: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM, VmSize), in bytes."""
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} not found in /proc/self/status (this needs Linux)")


def process_peak_rss_bytes() -> int:
    """The whole process's peak resident memory so far: for a case run in its own process."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


# ---- environment ----


def environment(device: str | torch.device = "cpu") -> dict[str, object]:
    """What the figures depend on: versions, CPU, threads, machine load, device."""
    device = torch.device(device)
    versions = {
        "python": platform.python_version(),
        "metric_runner": package_version("metric_runner"),
    }
    versions.update({name: package_version(name) for name in REPORTED_PACKAGES})
    block = {
        **{name: version for name, version in versions.items() if version is not None},
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    if device.type == "cuda":
        block["gpu"] = torch.cuda.get_device_name(device)
        block["cuda"] = torch.version.cuda
    return block


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- output ----


@dataclass
class Table:
    """A titled table: what the script prints, and what --out writes to JSON and markdown."""

    title: str
    header: list[str]
    rows: list[list[object]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.header):
            raise ValueError(f"{self.title!r}: {len(cells)} cells for {len(self.header)} columns")
        self.rows.append(list(cells))

    def markdown(self) -> str:
        return markdown_table([self.header, *self.rows])


def add_out_argument(parser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="also write PATH.json (tables, raw results, environment, command) and PATH.md",
    )


def write_results(
    out: Path | None,
    benchmark: str,
    tables: Iterable[Table],
    results: Mapping[str, object] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Path, Path] | None:
    """Write `out`.json and `out`.md (a suffix .json or .md on `out` is dropped); nothing when
    `out` is None. Returns the two paths."""
    if out is None:
        return None
    tables = list(tables)
    stem = out.with_suffix("") if out.suffix in (".json", ".md") else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    env = environment(device)
    document = {
        "benchmark": benchmark,
        "command": COMMAND,
        "environment": env,
        "tables": [{"title": t.title, "header": t.header, "rows": t.rows} for t in tables],
        "results": dict(results or {}),
    }
    json_path, markdown_path = Path(f"{stem}.json"), Path(f"{stem}.md")
    json_path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    sections = [f"# {benchmark}", f"`{' '.join(COMMAND)}`"]
    sections += [f"## {table.title}\n\n{table.markdown()}" for table in tables]
    sections.append(
        "## environment\n\n" + markdown_table([["key", "value"], *map(list, env.items())])
    )
    markdown_path.write_text("\n\n".join(sections) + "\n")
    return json_path, markdown_path
