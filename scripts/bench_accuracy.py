"""Time and peak memory of AccuracyCalculator against pytorch-metric-learning's and a bare faiss
search, on clustered 128-d float32 embeddings with query = reference and 100 samples per class.

    python scripts/bench_accuracy.py                       # 10k, 50k and 200k queries
    python scripts/bench_accuracy.py --k-none-max 10000    # plus the k=None cases up to 10k
    python scripts/bench_accuracy.py --sizes 50000 --k-none-max 50000 --cases ours_knn_full

Every case runs in its own subprocess, so its peak RSS (resource.getrusage) is its own; with
--repeat, each case runs that many times and the fastest run counts (the machine is shared).
Cases:
  faiss      bare faiss.IndexFlatL2 search of the same k neighbours (k = max_bin_count, +1 for self)
CPU seconds (time.process_time, all threads) are reported next to wall seconds: on a shared
machine they show the work done, independently of how much of the CPU the case was given.
  ours       AccuracyCalculator(k="max_bin_count"): all 7 metrics (the k-means part split out)
  pml        pytorch_metric_learning's AccuracyCalculator, same arguments (when installed and the
             estimate of its memory stays under --pml-max-gb)
  ours_knn_full / pml_knn_full   k=None: the five k-NN metrics over the whole ranking
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DIM = 128
PER_CLASS = 100


def make_data(n, seed=0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    num_classes = n // PER_CLASS
    labels = torch.arange(num_classes).repeat_interleave(PER_CLASS)
    centers = torch.randn(num_classes, DIM, generator=generator)
    embeddings = centers[labels] + 1.2 * torch.randn(n, DIM, generator=generator)
    return torch.nn.functional.normalize(embeddings, dim=1), labels


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Timed:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, function):
        self.function, self.seconds = function, 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def run_case(case, n):
    """Runs one case in this process and returns its measurements."""
    embeddings, labels = make_data(n)
    k = PER_CLASS - 1
    if case == "faiss":
        import faiss
    else:
        calculator = build_calculator(case)
        cluster = calculator.get_cluster_labels = Timed(calculator.get_cluster_labels)
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
            "kmeans_s": cluster.seconds,
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


def build_calculator(case):
    import torch

    if case.startswith("pml"):
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from metric_runner.utils.accuracy_calculator import AccuracyCalculator
    if case.endswith("knn_full"):
        return AccuracyCalculator(k=None, exclude=("NMI", "AMI"), device=torch.device("cpu"))
    return AccuracyCalculator(k="max_bin_count", device=torch.device("cpu"))


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
    rows = []
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
        rows += table_rows(n, results)
    print("\n".join(rows_to_markdown(rows)))


def ratio(result, reference, key):
    if key not in result or key not in (reference or {}):
        return ""
    return f"{result[key] / reference[key]:.2f}"


def table_rows(n, results):
    rows = []
    faiss = results.get("faiss", {})
    for case, result in results.items():
        if "seconds" not in result:
            rows.append([f"{n:,}", case, result.get("skipped") or result.get("error")] + [""] * 6)
            continue
        full_ranking = case.endswith("knn_full")
        pml = results.get("pml_knn_full" if full_ranking else "pml", {})
        knn_part = {"seconds": result["seconds"] - result.get("kmeans_s", 0.0)}
        rows.append(
            [
                f"{n:,}",
                case,
                f"{result['seconds']:.1f} ({result['cpu_seconds']:.1f})",
                f"{result['kmeans_s']:.1f}" if "kmeans_s" in result and not full_ranking else "",
                f"{result['peak_gb']:.2f} ({result['baseline_gb']:.2f})",
                ""
                if full_ranking or "seconds" not in faiss
                else f"{ratio(result, faiss, 'seconds')} ({ratio(result, faiss, 'cpu_seconds')})",
                ratio(knn_part, faiss, "seconds")
                if "kmeans_s" in result and not full_ranking
                else "",
                f"{ratio(result, pml, 'seconds')} ({ratio(result, pml, 'cpu_seconds')})"
                if case.startswith("ours") and "seconds" in pml
                else "",
                f"{result['mean_average_precision_at_r']:.4f}" if "kmeans_s" in result else "",
            ]
        )
    return rows


def rows_to_markdown(rows):
    header = [
        "queries",
        "case",
        "wall s (CPU s)",
        "k-means wall s",
        "peak GB (after data)",
        "× faiss wall (CPU)",
        "k-NN part × faiss",
        "× PML wall (CPU)",
        "MAP@R",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


if __name__ == "__main__":
    main()
