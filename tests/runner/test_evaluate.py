"""mode=test: the checkpoint's own config, the per-class tables, the tester's switches."""

import pytest

from metric_runner.runner.checkpoint import CheckpointError
from metric_runner.runner.cli import compose_config, run
from metric_runner.runner.components import check_config
from metric_runner.runner.evaluate import (
    evaluate_checkpoint,
    per_class_tables,
    with_dataset_classes,
)


def test_per_class_tables_are_readable_markdown():
    table = per_class_tables(
        {
            "test": {
                "5": {"queries": 3, "precision_at_1": 1.0},
                "7": {"queries": 2, "precision_at_1": 0.5},
            }
        }
    )
    assert table.splitlines() == [
        "## test, per class",
        "",
        "| class | queries | precision_at_1 |",
        "|---|---|---|",
        "| 5 | 3 | 1.0000 |",
        "| 7 | 2 | 0.5000 |",
    ]


def test_per_class_rows_name_the_dataset_class_of_renumbered_labels():
    class Renumbered:
        label_map = {"label": [101, 104]}  # run labels 0, 1 are the dataset's 101, 104

    class Unchanged:
        label_map = None

    per_class = {
        "test": {
            "0": {"queries": 3, "precision_at_1": 1.0},
            "1": {"queries": 2, "precision_at_1": 0.5},
        },
        "val": {"4": {"queries": 2, "precision_at_1": 0.0}},
    }
    named = with_dataset_classes(per_class, {"test": Renumbered(), "val": Unchanged()})
    assert named["test"] == {
        "0": {"dataset_class": 101, "queries": 3, "precision_at_1": 1.0},
        "1": {"dataset_class": 104, "queries": 2, "precision_at_1": 0.5},
    }
    assert named["val"] == per_class["val"]
    assert per_class_tables({"test": named["test"]}).splitlines()[2:] == [
        "| class | dataset class | queries | precision_at_1 |",
        "|---|---|---|---|",
        "| 0 | 101 | 3 | 1.0000 |",
        "| 1 | 104 | 2 | 0.5000 |",
    ]


def test_switches_are_config_keys_checked_like_any_other():
    cfg = compose_config(["tester.return_per_class=true", "tester.visualize=true"])
    built = check_config(cfg).tester.build()
    assert built.return_per_class and built.visualize
    assert built.accuracy_calculator.return_per_class
    defaults = check_config(compose_config()).tester.build()
    assert not defaults.return_per_class and not defaults.visualize
    assert defaults.accuracy_calculator.k == "max_bin_count"


MLP_RUN = ["model=mlp", "dataset.as_images=false", "self_supervised=null", "epochs=1"]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """(run directory, metrics.jsonl records) of a one-epoch `model=mlp` run."""
    run_dir = tmp_path_factory.mktemp("runs") / "mlp"
    return run_dir, run(compose_config(MLP_RUN), run_dir)


@pytest.mark.slow
def test_mode_test_takes_model_dataset_and_tester_from_the_checkpoint(mlp_run, tmp_path, capsys):
    run_dir, records = mlp_run
    last = run_dir / "checkpoints" / "last.pt"
    record = run(compose_config(["mode=test", f"checkpoint={last}"]), tmp_path / "test")
    assert record["epoch"] == records[-1]["epoch"] == 1
    for split in ("val", "test"):
        assert record["accuracies"][split] == pytest.approx(records[-1]["accuracies"][split])
    assert "instead of the checkpoint" not in capsys.readouterr().out


@pytest.mark.slow
def test_a_command_line_override_wins_over_the_checkpoint_and_is_reported(
    mlp_run, tmp_path, capsys
):
    run_dir, records = mlp_run
    overrides = ["mode=test", f"checkpoint={run_dir}", "tester.return_per_class=true"]
    record = evaluate_checkpoint(compose_config(overrides), tmp_path / "test", overrides)
    assert set(record["per_class"]) == {"val", "test"}
    best = next(r for r in records if r["epoch"] == record["epoch"])
    assert record["accuracies"]["test"] == pytest.approx(best["accuracies"]["test"])
    out = capsys.readouterr().out
    assert "from the command line instead of the checkpoint: tester.return_per_class\n" in out
    chosen = ["mode=test", f"checkpoint={run_dir}", "model=small_cnn", "dataset.as_images=true"]
    with pytest.raises(CheckpointError, match="holds a different model.trunk"):
        evaluate_checkpoint(compose_config(chosen), tmp_path / "cnn", chosen)
