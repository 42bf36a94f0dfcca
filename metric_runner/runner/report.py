"""metric-report: one table a paper can cite from many runs and sweeps.

    metric-report multirun/digits_benchmark               # report.md/.csv/.html + PNGs there
    metric-report runs/ multirun/ --baseline loss=TripletMarginLoss --out results/
    metric-report --commands multirun/digits_benchmark    # the command of every run

Runs whose configs differ only in their seed (or fold) form one row: each metric is the mean
± the 95% Student-t confidence interval over them. The row's label is the config values that
differ between rows. Scores are taken at the epoch with the best monitored validation score
(the run's early_stopping split/metric) or at the last epoch (--epoch last).
"""

import argparse
import base64
import csv
import html
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .run_log import markdown_table

# Keys that say how a run was run, not what it trained: never a row label.
NOT_A_LABEL = {
    "mode",
    "resume",
    "checkpoint",
    "device",
    "num_workers",
    "pin_memory",
    "log_stats",
    "sweep_name",
    "imports",
}
# Keys a row aggregates over (its repetitions).
REPETITION_KEYS = {"seed", "fold"}
DEFAULT_MONITOR = ("val", "mean_average_precision_at_r")
RUN_MARKERS = ("metrics.jsonl", "config.yaml", "job.json")
SKIPPED_FOLDERS = {"checkpoints", ".hydra", "plots"}
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ReportError(ValueError):
    """Bad input to metric-report; printed as one line."""


@dataclass
class Run:
    path: Path
    config: dict
    records: list
    status: str  # done | failed | pruned | unfinished
    reason: str = ""
    command: str = ""
    environment: dict = field(default_factory=dict)


@dataclass
class Row:
    label: str
    runs: list
    scores: dict  # metric -> per-run values at the chosen epoch
    best_epochs: list
    curves: dict  # epoch -> per-run values of the primary metric


# ---------------------------------------------------------------- reading runs


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Every run directory under `paths` (a path may itself be one), and the sweep
    directories met on the way (those holding multirun.yaml)."""
    runs, sweeps = [], []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise ReportError(f"{path}: no such directory; give run or sweep directories")
        walk(path, runs, sweeps)
    return runs, sweeps


def walk(folder: str | os.PathLike, runs: list[Path], sweeps: list[Path]) -> None:
    names = {entry.name: entry for entry in os.scandir(folder)}
    if any(marker in names for marker in RUN_MARKERS):
        runs.append(Path(folder))
        return
    if "multirun.yaml" in names:
        sweeps.append(Path(folder))
    for name, entry in sorted(names.items()):
        if entry.is_dir() and name not in SKIPPED_FOLDERS:
            walk(entry.path, runs, sweeps)


def read_run(path: Path) -> Run:
    job = read_json(path / "job.json") or {}
    config = read_yaml(path / "config.yaml") or read_yaml(path / ".hydra" / "config.yaml") or {}
    records = read_records(path / "metrics.jsonl")
    return Run(
        path=path,
        config=config,
        records=records,
        status=run_status(path, job, records),
        reason=job.get("reason", ""),
        command=job.get("command") or command_from_overrides(path),
        environment=job.get("environment", {}),
    )


def run_status(path: Path, job: dict, records: list[dict]) -> str:
    if job.get("status") in ("failed", "pruned"):
        return job["status"]
    finished = job.get("status") == "done" or (not job and (path / "summary.md").is_file())
    return "done" if finished and records else "unfinished"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=YAML_LOADER)
    except (OSError, yaml.YAMLError):
        return None


def read_records(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut short by a killed run
            break
    return records


def command_from_overrides(path: Path) -> str:
    overrides = read_yaml(path / ".hydra" / "overrides.yaml")
    if overrides is None:
        return ""
    return " ".join(["metric-run", *(shell_quote(o) for o in overrides)])


def shell_quote(text: str) -> str:
    safe = all(c.isalnum() or c in "-_=.,/:+~[]@" for c in text)
    return text if safe else "'" + text.replace("'", "'\\''") + "'"


def missing_jobs(sweep_dir: Path) -> list[int]:
    """Jobs a grid sweep asked for that left no directory: their numbers."""
    multirun = read_yaml(sweep_dir / "multirun.yaml") or {}
    hydra = multirun.get("hydra", {})
    sweeper = hydra.get("sweeper") or {}
    if "optuna" in str(sweeper.get("_target_", "")).lower():
        return []
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    expected = grid_size([*params, *hydra.get("overrides", {}).get("task", [])])
    return [n for n in range(expected) if not (sweep_dir / str(n)).is_dir()]


def grid_size(overrides: Iterable[str]) -> int:
    """The number of jobs of a grid sweep (a key given twice: the later list counts, as in
    Hydra's basic sweeper)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sizes = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        discrete = override.is_discrete_sweep()
        sizes[override.get_key_element()] = (
            len(list(override.sweep_string_iterator())) if discrete else 1
        )
    return math.prod(sizes.values())


# ---------------------------------------------------------------- grouping and statistics


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix[:-1]: value}
    flat = {}
    for key, inner in value.items():
        flat.update(flatten(inner, f"{prefix}{key}."))
    return flat


def label_keys(flat_configs: Sequence[dict[str, Any]]) -> list[str]:
    """The config keys whose values differ between runs, repetitions and run control excluded;
    a component's arguments are left out where its name already tells them apart."""
    keys = set().union(*flat_configs) if flat_configs else set()
    varying = sorted(
        k
        for k in keys
        if k.split(".")[-1] not in REPETITION_KEYS
        and k.split(".")[0] not in NOT_A_LABEL
        and len({repr(c.get(k)) for c in flat_configs}) > 1
    )
    return [k for k in varying if not told_by_name(k, varying, flat_configs)]


def told_by_name(key: str, varying: list[str], flat_configs: Sequence[dict[str, Any]]) -> bool:
    parent = key.rpartition(".")[0]
    name_key = f"{parent}.name"
    if not parent or key == name_key or name_key not in varying:
        return False
    values_per_name = {}
    for config in flat_configs:
        values_per_name.setdefault(repr(config.get(name_key)), set()).add(repr(config.get(key)))
    return all(len(values) == 1 for values in values_per_name.values())


def row_label(flat_config: dict[str, Any], keys: list[str]) -> str:
    parts = [f"{k.removesuffix('.name')}={flat_config.get(k)}" for k in keys]
    return ", ".join(parts) or "all runs"


def monitor_of(config: dict) -> tuple[str, str]:
    stopping = config.get("early_stopping") or {}
    return stopping.get("split", DEFAULT_MONITOR[0]), stopping.get("metric", DEFAULT_MONITOR[1])


def chosen_record(run: Run, epoch_choice: str) -> dict:
    """The record of the epoch a row reports: best monitored score (earliest on ties, as in
    training) or the last evaluation."""
    if epoch_choice == "last":
        return run.records[-1]
    split, metric = monitor_of(run.config)
    scored = [r for r in run.records if metric in r["accuracies"].get(split, {})]
    if not scored:
        return run.records[-1]
    return max(scored, key=lambda r: r["accuracies"][split][metric])


def build_rows(runs: list[Run], split: str, metric: str, epoch_choice: str) -> list[Row]:
    flat = [flatten(run.config) for run in runs]
    keys = label_keys(flat)
    grouped = {}
    for run, config in zip(runs, flat):
        grouped.setdefault(row_label(config, keys), []).append(run)
    rows = [make_row(label, members, split, epoch_choice) for label, members in grouped.items()]
    for row in rows:
        if metric not in row.scores:
            raise ReportError(
                f"--metric {metric}: the runs report no {split}/{metric}; they report "
                f"{', '.join(sorted(row.scores)) or 'nothing'} (choose one, or another --split)"
            )
    return rows


def make_row(label: str, runs: list[Run], split: str, epoch_choice: str) -> Row:
    scores, best_epochs, curves = {}, [], {}
    for run in runs:
        record = chosen_record(run, epoch_choice)
        best_epochs.append(record["epoch"])
        for name, value in record["accuracies"].get(split, {}).items():
            scores.setdefault(name, []).append(value)
    return Row(label, runs, scores, best_epochs, curves)


def add_curves(rows: list[Row], split: str, metric: str) -> None:
    for row in rows:
        for run in row.runs:
            for record in run.records:
                value = record["accuracies"].get(split, {}).get(metric)
                if value is not None:
                    row.curves.setdefault(record["epoch"], []).append(value)


def mean_and_ci(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, half-width of the 95% Student-t interval, n); the half-width is nan for n < 2."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return float(values.mean()), math.nan, n
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean()), float(half), n


def welch_p_value(values: Sequence[float], baseline_values: Sequence[float]) -> float:
    from scipy import stats

    if len(values) < 2 or len(baseline_values) < 2:
        return math.nan
    return float(stats.ttest_ind(values, baseline_values, equal_var=False).pvalue)


def find_baseline(rows: list[Row], wanted: str) -> Row:
    exact = [row for row in rows if row.label == wanted]
    matches = exact or [row for row in rows if wanted in row.label]
    if len(matches) != 1:
        found = "matches several rows" if matches else "matches no row"
        labels = "; ".join(row.label for row in rows)
        raise ReportError(f"--baseline {wanted!r} {found}; the rows are: {labels}")
    return matches[0]


# ---------------------------------------------------------------- the table


def table(rows: list[Row], metric: str, baseline: Row | None) -> list[list[str]]:
    """Header and rows of the report table (strings), primary metric first."""
    metrics = [metric, *sorted(m for m in rows[0].scores if m != metric)]
    header = ["configuration", "n", *metrics, "best epoch"]
    if baseline is not None:
        header += [f"Δ {metric} vs baseline", "p (Welch)"]
    lines = [header]
    for row in sorted(rows, key=lambda r: -np.mean(r.scores[metric])):
        cells = [row.label, str(len(row.runs))]
        cells += [format_ci(*mean_and_ci(row.scores.get(m, [math.nan]))[:2]) for m in metrics]
        cells.append(f"{np.mean(row.best_epochs):.1f}")
        if baseline is not None:
            cells += comparison_cells(row, baseline, metric)
        lines.append(cells)
    return lines


def comparison_cells(row: Row, baseline: Row, metric: str) -> list[str]:
    if row is baseline:
        return ["baseline", ""]
    difference = np.mean(row.scores[metric]) - np.mean(baseline.scores[metric])
    p = welch_p_value(row.scores[metric], baseline.scores[metric])
    return [f"{difference:+.4f}", "n/a" if math.isnan(p) else f"{p:.4g}"]


def format_ci(mean: float, half: float) -> str:
    return f"{mean:.4f}" if math.isnan(half) else f"{mean:.4f} ± {half:.4f}"


def html_table(lines: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in lines[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
        for cells in lines[1:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def csv_rows(rows: list[Row], metric: str, baseline: Row | None) -> list[list]:
    """Plain numbers for spreadsheets: mean, ci95 (half-width) and n per metric."""
    metrics = [metric, *sorted(m for m in rows[0].scores if m != metric)]
    header = ["configuration", "n", "best_epoch_mean"]
    for m in metrics:
        header += [f"{m}_mean", f"{m}_ci95"]
    if baseline is not None:
        header += ["p_value_vs_baseline"]
    lines = [header]
    for row in sorted(rows, key=lambda r: -np.mean(r.scores[metric])):
        cells = [row.label, len(row.runs), float(np.mean(row.best_epochs))]
        for m in metrics:
            mean, half, _ = mean_and_ci(row.scores.get(m, [math.nan]))
            cells += [mean, half]
        if baseline is not None:
            cells.append(
                ""
                if row is baseline
                else welch_p_value(row.scores[metric], baseline.scores[metric])
            )
        lines.append(cells)
    return lines


# ---------------------------------------------------------------- plots


def plot_curves(rows: list[Row], split: str, metric: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        epochs = sorted(row.curves)
        stats = [mean_and_ci(row.curves[e]) for e in epochs]
        means = np.array([s[0] for s in stats])
        halves = np.nan_to_num(np.array([s[1] for s in stats]))
        axes.plot(epochs, means, label=row.label)
        axes.fill_between(epochs, means - halves, means + halves, alpha=0.2)
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"{split}/{metric}")
    axes.set_title("mean and 95% confidence band over seeds")
    axes.legend(fontsize="small")
    save_figure(figure, path)


def plot_bars(rows: list[Row], split: str, metric: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    ordered = sorted(rows, key=lambda r: -np.mean(r.scores[metric]))
    stats = [mean_and_ci(row.scores[metric]) for row in ordered]
    figure, axes = plt.subplots(figsize=(7, 1.2 + 0.45 * len(ordered)))
    positions = np.arange(len(ordered))
    axes.barh(
        positions,
        [s[0] for s in stats],
        xerr=np.nan_to_num([s[1] for s in stats]),
        capsize=4,
        color="tab:blue",
    )
    axes.set_yticks(positions, [row.label for row in ordered], fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel(f"{split}/{metric} (mean, 95% CI)")
    save_figure(figure, path)


def save_figure(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------- environment


def environment() -> dict[str, Any]:
    """What produced the numbers: versions, git commit and dirty flag, machine."""
    import importlib.metadata as metadata

    versions = {}
    for package in ("metric-runner", "torch", "numpy", "faiss-cpu", "hydra-core", "optuna"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    info = {"python": platform.python_version(), "packages": versions, "cpu": cpu_name()}
    info.update(git_state(Path(__file__).resolve().parents[2]))
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(folder: Path) -> dict[str, Any]:
    def git(*arguments):
        return subprocess.run(
            ["git", "-C", str(folder), *arguments], capture_output=True, text=True, timeout=10
        )

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return {}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {"git_commit": commit.stdout.strip(), "git_dirty": dirty}


def environment_lines(runs: list[Run]) -> list[str]:
    """One line per distinct recorded environment value (runs recorded at different times may
    differ: that is worth seeing)."""
    recorded = [run.environment for run in runs if run.environment]
    if not recorded:
        return ["The runs did not record their environment; this is the report's:"] + [
            f"- {k}: {v}" for k, v in flatten(environment()).items()
        ]
    values = {}
    for env in recorded:
        for key, value in flatten(env).items():
            values.setdefault(key, set()).add(str(value))
    return [f"- {key}: {', '.join(sorted(v))}" for key, v in sorted(values.items())]


# ---------------------------------------------------------------- the report


def problem_lines(runs: list[Run], missing: list[Path]) -> list[str]:
    lines = [f"- missing: {path}" for path in missing]
    for run in runs:
        if run.status in ("failed", "pruned"):
            lines.append(f"- {run.status}: {run.path}: {run.reason or 'no reason recorded'}")
        elif run.status == "unfinished":
            lines.append(f"- unfinished: {run.path}")
    return lines


def write_report(
    out: Path,
    lines: list[list[str]],
    rows: list[Row],
    runs: list[Run],
    problems: list[str],
    options: argparse.Namespace,
    baseline: Row | None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(rows, options.split, options.metric, out / "report_curves.png")
    plot_bars(rows, options.split, options.metric, out / "report_bars.png")
    with (out / "report.csv").open("w", newline="") as file:
        csv.writer(file).writerows(csv_rows(rows, options.metric, baseline))
    intro = report_intro(options, baseline)
    commands = [f"{run.command}  # {run.path}" for row in rows for run in row.runs]
    sections = {
        "Runs that are missing, failed or unfinished": problems or ["- none"],
        "Environment": environment_lines(runs),
    }
    markdown = [f"# Report\n\n{intro}\n\n{markdown_table(lines)}\n"]
    markdown.append("![metric per epoch](report_curves.png)\n\n![final scores](report_bars.png)\n")
    markdown += [f"## {title}\n\n" + "\n".join(body) + "\n" for title, body in sections.items()]
    markdown.append("## Commands\n\n```\n" + "\n".join(commands) + "\n```\n")
    (out / "report.md").write_text("\n".join(markdown))
    (out / "report.html").write_text(report_html(out, intro, lines, sections, commands))


def report_intro(options: argparse.Namespace, baseline: Row | None) -> str:
    text = (
        f"{options.split}/{options.metric} and the other {options.split} metrics at the "
        f"{'best validation' if options.epoch == 'best' else 'last'} epoch: mean ± 95% "
        "Student-t confidence interval over each configuration's seeds; n runs per row."
    )
    if baseline is not None:
        text += f" p: Welch's t-test against the baseline ({baseline.label})."
    return text


def report_html(
    out: Path,
    intro: str,
    lines: list[list[str]],
    sections: dict[str, list[str]],
    commands: list[str],
) -> str:
    images = "".join(
        f'<img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode((out / name).read_bytes()).decode()}">'
        for name in ("report_curves.png", "report_bars.png")
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>metric-report</title><style>",
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}",
        "td,th{border:1px solid #bbb;padding:4px 8px}img{max-width:48%;margin:4px}</style>",
        f"</head><body><h1>Report</h1><p>{html.escape(intro)}</p>{html_table(lines)}{images}",
    ]
    for title, body in sections.items():
        items = "".join(f"<li>{html.escape(line.lstrip('- '))}</li>" for line in body)
        parts.append(f"<h2>{html.escape(title)}</h2><ul>{items}</ul>")
    parts.append(f"<h2>Commands</h2><pre>{html.escape(chr(10).join(commands))}</pre>")
    return "".join(parts) + "</body></html>"


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="metric-report", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run or sweep directories")
    parser.add_argument("--metric", default=DEFAULT_MONITOR[1])
    parser.add_argument("--split", default="test")
    parser.add_argument("--epoch", choices=("best", "last"), default="best")
    parser.add_argument("--baseline", metavar="LABEL", help="the row others are compared with")
    parser.add_argument("--out", type=Path, help="folder for the report (default: next to DIR)")
    parser.add_argument("--commands", action="store_true", help="print every run's command")
    return parser.parse_args(argv)


def default_out(dirs: Sequence[str]) -> Path:
    return Path(os.path.commonpath([os.path.abspath(d) for d in dirs]))


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_arguments(sys.argv[1:] if argv is None else argv)
    try:
        report(options)
    except ReportError as error:
        print(f"metric-report: error: {error}", file=sys.stderr)
        sys.exit(2)


def report(options: argparse.Namespace) -> None:
    paths, sweeps = find_run_dirs(options.dirs)
    runs = [read_run(path) for path in paths]
    missing = [sweep / str(n) for sweep in sweeps for n in missing_jobs(sweep)]
    finished = [run for run in runs if run.status == "done"]
    if not finished:
        raise ReportError(f"no finished run under {', '.join(options.dirs)}")
    rows = build_rows(finished, options.split, options.metric, options.epoch)
    if options.commands:
        for row in rows:
            print(f"# {row.label}\n" + "\n".join(run.command for run in row.runs))
        return
    add_curves(rows, options.split, options.metric)
    baseline = find_baseline(rows, options.baseline) if options.baseline else None
    lines = table(rows, options.metric, baseline)
    out = options.out or default_out(options.dirs)
    write_report(out, lines, rows, runs, problem_lines(runs, missing), options, baseline)
    print(markdown_table(lines))
    print(f"\nreport: {out / 'report.md'} (and report.csv, report.html, report_*.png)")


if __name__ == "__main__":
    main()
