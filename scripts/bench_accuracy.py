"""Time and peak memory of AccuracyCalculator against pytorch-metric-learning's and a bare faiss
search, on clustered 128-d float32 embeddings with query = reference and 100 samples per class.

    python scripts/bench_accuracy.py                       # 10k, 50k and 200k queries
    python scripts/bench_accuracy.py --k-none-max 10000    # plus the k=None cases up to 10k
    python scripts/bench_accuracy.py --sizes 50000 --k-none-max 50000 --cases ours_knn_full
    python scripts/bench_accuracy.py --sizes 10000 --out results/accuracy   # + .json and .md

Every case runs in its own subprocess, so its peak RSS (resource.getrusage) is its own; with
--repeat, each case runs that many times and the fastest run counts (the machine is shared).
Cases:
  faiss      bare faiss.IndexFlatL2 search of the same k neighbours (k = max_bin_count, +1 for self)
  ours       AccuracyCalculator(k="max_bin_count"): all 7 metrics
  pml        pytorch_metric_learning's AccuracyCalculator, same arguments (when installed and the
             estimate of its memory stays under --pml-max-gb)
  ours_knn_full / pml_knn_full   k=None: the five k-NN metrics over the whole ranking

The table splits each calculator's time into the clustering part (k-means, then the NMI and
AMI scores; "k-means s" is the k-means alone) and the rest, the "k-NN part": the search and
the five ranking metrics, which is what compares with the bare faiss search.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_harness import Table, add_out_argument, process_peak_rss_bytes, write_results

DIM = 128
PER_CLASS = 100
HEADER = [
    "queries",
    "k",
    "ours total s",
    "ours k-NN part s",
    "ours k-means s",
    "bare faiss s",
    "PML total s",
    "PML k-NN part s",
    "ours k-NN ÷ faiss",
    "ours ÷ PML",
    "peak MB ours / faiss / PML",
    "MAP@R",
]


def make_data(n, seed=0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    num_classes = n // PER_CLASS
    labels = torch.arange(num_classes).repeat_interleave(PER_CLASS)
    centers = torch.randn(num_classes, DIM, generator=generator)
    embeddings = centers[labels] + 1.2 * torch.randn(n, DIM, generator=generator)
    return torch.nn.functional.normalize(embeddings, dim=1), labels


def peak_rss_gb():
    return process_peak_rss_bytes() / 2**30


class Clock:
    """Adds up the seconds spent inside `with clock:` blocks."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc_info):
        self.seconds += time.perf_counter() - self.start


def timed_calculator_class(base, kmeans_clock, clustering_clock):
    """A subclass of `base` (ours or PML's AccuracyCalculator) that times its k-means and the
    clustering metrics: the documented way to extend either is to subclass it."""

    class TimedAccuracyCalculator(base):
        def get_cluster_labels(self, *args, **kwargs):
            with clustering_clock, kmeans_clock:
                return super().get_cluster_labels(*args, **kwargs)

        def calculate_NMI(self, *args, **kwargs):
            with clustering_clock:
                return super().calculate_NMI(*args, **kwargs)

        def calculate_AMI(self, *args, **kwargs):
            with clustering_clock:
                return super().calculate_AMI(*args, **kwargs)

    return TimedAccuracyCalculator


def run_case(case, n):
    """Runs one case in this process and returns its measurements."""
    embeddings, labels = make_data(n)
    k = PER_CLASS - 1
    if case == "faiss":
        import faiss
    else:
        kmeans_clock, clustering_clock = Clock(), Clock()
        calculator = build_calculator(case, kmeans_clock, clustering_clock)
    baseline_gb = peak_rss_gb()
    start, start_cpu = time.perf_counter(), time.process_time()
    result = {}
    if case == "faiss":
        index = faiss.IndexFlatL2(DIM)
        index.add(embeddings.numpy())
        index.search(embeddings.numpy(), k + 1)
    else:
        accuracies = calculator.get_accuracy(embeddings, labels)
        result = {
            "kmeans_s": kmeans_clock.seconds,
            "clustering_s": clustering_clock.seconds,
            "precision_at_1": accuracies["precision_at_1"],
            "mean_average_precision_at_r": accuracies["mean_average_precision_at_r"],
        }
    result.update(
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - start_cpu,
        peak_gb=peak_rss_gb(),
        baseline_gb=baseline_gb,
    )
    return result


def build_calculator(case, kmeans_clock, clustering_clock):
    import torch

    if case.startswith("pml"):
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from metric_runner.utils.accuracy_calculator import AccuracyCalculator
    calculator_class = timed_calculator_class(AccuracyCalculator, kmeans_clock, clustering_clock)
    if case.endswith("knn_full"):
        return calculator_class(k=None, exclude=("NMI", "AMI"), device=torch.device("cpu"))
    return calculator_class(k="max_bin_count", device=torch.device("cpu"))


def pml_estimated_gb(case, n):
    """PML holds the (n, k) neighbour indices, distances and labels, plus comparison copies."""
    k = n - 1 if case.endswith("knn_full") else PER_CLASS - 1
    return n * k * 40 / 2**30


def in_subprocess(case, n, repeat):
    runs = []
    for _ in range(repeat):
        completed = subprocess.run(
            [sys.executable, __file__, "--case", case, "--n", str(n)],
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            return {"error": completed.stderr.strip().splitlines()[-1]}
        runs.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    return min(runs, key=lambda run: run["seconds"])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument(
        "--k-none-max", type=int, default=0, help="time the k=None cases up to this size"
    )
    parser.add_argument("--pml-max-gb", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the fastest counts")
    parser.add_argument("--cases", nargs="+", help="run only these cases (default: all)")
    add_out_argument(parser)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.n)))
        return
    try:
        import pytorch_metric_learning  # noqa: F401

        has_pml = True
    except ModuleNotFoundError:
        has_pml = False
    table = Table("AccuracyCalculator, k-NN search and clustering", HEADER)
    all_results = {}
    for n in args.sizes:
        cases = ["faiss", "ours", "pml"] + (
            ["ours_knn_full", "pml_knn_full"] if n <= args.k_none_max else []
        )
        results = {}
        for case in cases:
            if args.cases and case not in args.cases:
                continue
            if case.startswith("pml") and not has_pml:
                results[case] = {"skipped": "pytorch-metric-learning not installed"}
            elif case.startswith("pml") and pml_estimated_gb(case, n) > args.pml_max_gb:
                results[case] = {"skipped": f"needs ~{pml_estimated_gb(case, n):.0f} GB"}
            else:
                results[case] = in_subprocess(case, n, args.repeat)
            print(f"n={n} {case}: {results[case]}", file=sys.stderr, flush=True)
        for row in table_rows(n, results):
            table.add(*row)
        all_results[str(n)] = results
    print(table.markdown())
    write_results(args.out, "bench_accuracy", [table], all_results)


def ratio(numerator, denominator):
    return f"{numerator / denominator:.2f}" if numerator is not None and denominator else ""


def seconds(result, key="seconds"):
    return result.get(key) if "seconds" in result else None


def knn_seconds(result):
    """Wall seconds outside the clustering part (k-means, NMI, AMI): the k-NN search and the
    five ranking metrics."""
    total = seconds(result)
    return None if total is None else total - result.get("clustering_s", 0.0)


def cell(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def peak_mb(result):
    return f"{result['peak_gb'] * 1024:.0f}" if "peak_gb" in result else ""


def table_rows(n, results):
    """One row for the k=max_bin_count cases and, when timed, one for the k=None cases."""
    faiss, ours, pml = (results.get(case, {}) for case in ("faiss", "ours", "pml"))
    rows = [
        [
            f"{n:,}",
            "max_bin_count",
            cell(seconds(ours)) or ours.get("error", ""),
            cell(knn_seconds(ours)),
            cell(seconds(ours, "kmeans_s")),
            cell(seconds(faiss)),
            cell(seconds(pml)) or pml.get("skipped") or pml.get("error", ""),
            cell(knn_seconds(pml)),
            ratio(knn_seconds(ours), seconds(faiss)),
            ratio(seconds(ours), seconds(pml)),
            f"{peak_mb(ours)} / {peak_mb(faiss)} / {peak_mb(pml)}",
            cell(ours.get("mean_average_precision_at_r"), 4),
        ]
    ]
    full, pml_full = results.get("ours_knn_full"), results.get("pml_knn_full", {})
    if full is not None:
        rows.append(
            [
                f"{n:,}",
                "None",
                cell(seconds(full)) or full.get("error", ""),
                cell(seconds(full)),
                "",
                "",
                cell(seconds(pml_full)) or pml_full.get("skipped") or pml_full.get("error", ""),
                cell(seconds(pml_full)),
                "",
                ratio(seconds(full), seconds(pml_full)),
                f"{peak_mb(full)} / / {peak_mb(pml_full)}",
                "",
            ]
        )
    return rows


if __name__ == "__main__":
    main()
