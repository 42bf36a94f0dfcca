"""metric-report on generated run folders: the statistics equal hand-computed values, the
md/csv/html/png outputs exist and agree, and missing/failed/unfinished runs are listed."""

import csv
import json
import math

import pytest
import yaml

from metric_runner.runner.report import main as metric_report

# Student-t 0.975 quantile with 2 degrees of freedom (tables): CI half-width of 3 runs.
T_975_DF2 = 4.302652729911275
MAP = "mean_average_precision_at_r"


def write_run(folder, margin, seed, test_scores, val_scores, status="done", reason=""):
    """A run whose test MAP@R per epoch is `test_scores` and val MAP@R is `val_scores`."""
    folder.mkdir(parents=True)
    config = {
        "seed": seed,
        "device": "cpu",
        "loss": {"name": "TripletMarginLoss", "margin": margin},
        "early_stopping": {"split": "val", "metric": MAP},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    records = [
        {
            "epoch": epoch,
            "accuracies": {
                "val": {MAP: val},
                "test": {MAP: test, "precision_at_1": 1 - test},
            },
        }
        for epoch, (test, val) in enumerate(zip(test_scores, val_scores))
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    job = {"status": status, "command": f"metric-run loss.margin={margin} seed={seed}"}
    if reason:
        job["reason"] = reason
    (folder / "job.json").write_text(json.dumps(job))


# Best validation epoch is 1 in every run: the test values there are the reported ones.
A_AT_BEST = [0.5, 0.6, 0.7]
B_AT_BEST = [0.3, 0.4, 0.5]
VAL = [0.1, 0.9, 0.2]


@pytest.fixture
def sweep(tmp_path):
    """A 2 (margin) x 4 (seed) grid: seeds 0-2 finished, (0.1, seed 3) failed, (0.2, seed 3)
    never started; and a separate unfinished run."""
    root = tmp_path / "multirun" / "grid"
    root.mkdir(parents=True)
    task = ["loss.margin=0.1,0.2", "seed=0,1,2,3"]
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}}))
    for seed, (a, b) in enumerate(zip(A_AT_BEST, B_AT_BEST)):
        write_run(root / str(seed), 0.1, seed, [0.0, a, 0.99], VAL)
        write_run(root / str(4 + seed), 0.2, seed, [0.0, b, 0.99], VAL)
    write_run(root / "3", 0.1, 3, [0.0], [0.1], status="failed", reason="loss is nan at epoch 1")
    unfinished = tmp_path / "runs" / "interrupted"
    write_run(unfinished, 0.3, 0, [0.0, 0.5], [0.1, 0.2], status="running")
    return root, unfinished


def read_csv(path):
    with path.open() as file:
        return {row["configuration"]: row for row in csv.DictReader(file)}


def welch_p_df4(t):
    """Two-sided p of Student's t with 4 degrees of freedom (closed-form CDF)."""
    u = 1 + t * t / 4
    cdf = 0.5 + 3 / 8 * (t / math.sqrt(u)) * (1 - t * t / (12 * u))
    return 2 * (1 - cdf)


def test_means_cis_and_welch_p_values_equal_hand_computed_values(sweep, tmp_path, capsys):
    root, unfinished = sweep
    out = tmp_path / "report"
    metric_report([str(root), str(unfinished), "--baseline", "loss.margin=0.2", "--out", str(out)])
    rows = read_csv(out / "report.csv")
    assert set(rows) == {"loss.margin=0.1", "loss.margin=0.2"}
    a, b = rows["loss.margin=0.1"], rows["loss.margin=0.2"]
    assert (a["n"], b["n"]) == ("3", "3")
    assert float(a[f"{MAP}_mean"]) == pytest.approx(0.6, abs=1e-12)
    assert float(b[f"{MAP}_mean"]) == pytest.approx(0.4, abs=1e-12)
    half_width = T_975_DF2 * 0.1 / math.sqrt(3)  # both rows have sample sd 0.1
    assert float(a[f"{MAP}_ci95"]) == pytest.approx(half_width, rel=1e-9)
    assert float(b[f"{MAP}_ci95"]) == pytest.approx(half_width, rel=1e-9)
    assert float(a["precision_at_1_mean"]) == pytest.approx(0.4, abs=1e-12)
    assert float(a["best_epoch_mean"]) == 1.0
    # Welch: t = 0.2 / sqrt(0.01/3 + 0.01/3); equal variances and sizes give df = 4.
    t = 0.2 / math.sqrt(2 * 0.01 / 3)
    assert float(a["p_value_vs_baseline"]) == pytest.approx(welch_p_df4(t), rel=1e-9)
    assert b["p_value_vs_baseline"] == ""


def test_markdown_html_csv_and_plots_exist_and_agree(sweep, tmp_path):
    root, _ = sweep
    out = tmp_path / "report"
    metric_report([str(root), "--out", str(out)])
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for label, row in read_csv(out / "report.csv").items():
        cell = f"{float(row[f'{MAP}_mean']):.4f} ± {float(row[f'{MAP}_ci95']):.4f}"
        assert f"| {label} | 3 | {cell} |" in markdown
        assert f"<td>{label}</td><td>3</td><td>{cell}</td>" in page
    for name in ("report_curves.png", "report_bars.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in markdown
    assert page.count("data:image/png;base64,") == 2  # self-contained
    assert "metric-run loss.margin=0.2 seed=1" in markdown and "git_commit" in markdown


def test_missing_failed_and_unfinished_runs_are_listed(sweep, tmp_path):
    root, unfinished = sweep
    out = tmp_path / "report"
    metric_report([str(root), str(unfinished), "--out", str(out)])
    markdown = (out / "report.md").read_text()
    section = markdown.split("## Runs that are missing, failed or unfinished")[1]
    assert f"- missing: {root / '7'}" in section
    assert f"- failed: {root / '3'}: loss is nan at epoch 1" in section
    assert f"- unfinished: {unfinished}" in section
    assert "- missing" in (out / "report.html").read_text().replace("<li>", "- ")


def test_last_epoch_reports_the_last_evaluation(sweep, tmp_path):
    root, _ = sweep
    metric_report([str(root), "--epoch", "last", "--out", str(tmp_path / "r")])
    rows = read_csv(tmp_path / "r" / "report.csv")
    assert float(rows["loss.margin=0.1"][f"{MAP}_mean"]) == pytest.approx(0.99)
    assert float(rows["loss.margin=0.1"]["best_epoch_mean"]) == 2.0


def test_commands_prints_every_run_of_the_table(sweep, capsys):
    root, _ = sweep
    metric_report([str(root), "--commands"])
    out = capsys.readouterr().out
    for margin in (0.1, 0.2):
        for seed in range(3):
            assert f"metric-run loss.margin={margin} seed={seed}\n" in out
    assert "seed=3" not in out  # the failed run is not in the table


def test_unknown_baseline_is_one_line_naming_the_rows(sweep, tmp_path, capsys):
    root, _ = sweep
    with pytest.raises(SystemExit) as exit:
        metric_report([str(root), "--baseline", "margin=0.5", "--out", str(tmp_path / "r")])
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "metric-report: error: --baseline 'margin=0.5' matches no row; "
        "the rows are: loss.margin=0.1; loss.margin=0.2"
    )


def test_component_arguments_are_left_out_of_labels_when_the_name_tells_them(tmp_path):
    for seed in range(2):
        write_run(tmp_path / f"t{seed}", 0.1, seed, [0.5, 0.6], [0.1, 0.2])
        write_run(tmp_path / f"c{seed}", 0.1, seed, [0.4, 0.5], [0.1, 0.2])
        config = yaml.safe_load((tmp_path / f"c{seed}" / "config.yaml").read_text())
        config["loss"] = {"name": "ContrastiveLoss", "pos_margin": 0.0}
        (tmp_path / f"c{seed}" / "config.yaml").write_text(yaml.safe_dump(config))
    metric_report([str(tmp_path), "--out", str(tmp_path / "r")])
    assert set(read_csv(tmp_path / "r" / "report.csv")) == {
        "loss=TripletMarginLoss",
        "loss=ContrastiveLoss",
    }


def test_jobs_of_the_sweepers_params_count_for_the_missing_ones(tmp_path):
    root = tmp_path / "grid"
    root.mkdir()
    hydra = {"sweeper": {"params": {"seed": "0,1"}}, "overrides": {"task": ["loss.margin=0.1"]}}
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    write_run(root / "0", 0.1, 0, [0.5, 0.6], [0.1, 0.2])
    metric_report([str(root), "--out", str(tmp_path / "r")])
    assert f"- missing: {root / '1'}\n" in (tmp_path / "r" / "report.md").read_text()
