"""mode=test's helpers: the per-class tables, and the tester's switches as config keys."""

from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import check_config
from metric_runner.runner.evaluate import per_class_tables


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


def test_switches_are_config_keys_checked_like_any_other():
    cfg = compose_config(["tester.return_per_class=true", "tester.visualize=true"])
    built = check_config(cfg).tester.build()
    assert built.return_per_class and built.visualize
    assert built.accuracy_calculator.return_per_class
    defaults = check_config(compose_config()).tester.build()
    assert not defaults.return_per_class and not defaults.visualize
    assert defaults.accuracy_calculator.k == "max_bin_count"
