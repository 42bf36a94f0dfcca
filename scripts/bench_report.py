"""metric-report over many generated run folders: the time to read them and write the report.

    python scripts/bench_report.py                # 1,000 runs: 20 configurations x 50 seeds
    python scripts/bench_report.py --runs 100 --out results/report   # + report.json/.md

Each generated run looks like a 10-epoch metric-run run (config.yaml, metrics.jsonl,
summary.md, job.json). The issue's budget: 1,000 runs in under 10 s.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import yaml
from bench_harness import Table, add_out_argument, seconds, write_results

from metric_runner.runner.report import main as metric_report

METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def write_run(folder, loss, margin, seed, epochs, rng):
    folder.mkdir(parents=True)
    config = {
        "seed": seed,
        "epochs": epochs,
        "loss": {"name": loss, "margin": margin},
        "optimizer": {"name": "Adam", "lr": 0.001},
        "early_stopping": {"split": "val", "metric": "mean_average_precision_at_r"},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    lines = []
    for epoch in range(epochs + 1):
        accuracies = {
            s: {m: float(rng.uniform(0.3, 0.9)) for m in METRICS} for s in ("val", "test")
        }
        lines.append(json.dumps({"epoch": epoch, "accuracies": accuracies}))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "summary.md").write_text("# Run summary\n")
    job = {"status": "done", "command": f"metric-run loss.margin={margin} seed={seed}"}
    (folder / "job.json").write_text(json.dumps(job))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--configurations", type=int, default=20)
    add_out_argument(parser)
    options = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        sweep = Path(root) / "sweep"
        for index in range(options.runs):
            configuration = index % options.configurations
            write_run(
                sweep / str(index),
                "TripletMarginLoss",
                configuration / 100,
                index // options.configurations,
                10,
                rng,
            )
        elapsed = seconds(lambda: metric_report([str(sweep), "--out", str(Path(root) / "report")]))
    print(f"\nmetric-report over {options.runs} runs: {elapsed:.2f} s (budget: 10 s for 1,000)")
    table = Table("metric-report over generated runs", ["runs", "configurations", "seconds"])
    table.add(options.runs, options.configurations, round(elapsed, 3))
    write_results(options.out, "bench_report", [table], {"runs": options.runs, "seconds": elapsed})


if __name__ == "__main__":
    main()
