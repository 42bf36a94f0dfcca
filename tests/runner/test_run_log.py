"""The run log's helpers: the one markdown table and the summary table."""

from metric_runner.runner.run_log import markdown_table, summary_table


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
