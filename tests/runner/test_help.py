"""metric-run --help: our verbs, the config groups with their options, examples, then Hydra."""

import itertools
import re

import pytest
from omegaconf import OmegaConf

from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import check_config
from metric_runner.runner.help import EXAMPLES, help_text
from metric_runner.runner.registry import CONF_DIR


def group_entries(text):
    """{entry head: options text} of the config-groups part, continuation lines joined."""
    part = text.split("Config groups", 1)[1].split("\n\n", 1)[0]
    entries, head = {}, None
    for line in part.splitlines()[2:]:
        if line.startswith("      "):
            entries[head] += " " + line.strip()
        else:
            head, options = re.fullmatch(
                r"(\S+(?: \(default: [^)]*\))?): (.*)", line.strip()
            ).groups()
            entries[head] = options
    return entries


def test_help_is_usage_then_groups_then_examples_then_hydras_flags():
    text = help_text()
    usage = text.split("\n\n")[1]
    for verb in ("metric-run [GROUP=OPTION", "mode=test checkpoint=", "resume=", " -m ", "--list"):
        assert verb in usage
    order = [text.index(part) for part in ("Usage:", "Config groups", "Examples:", "--hydra-help")]
    assert order == sorted(order)
    assert text.splitlines()[-1].endswith("metric-run --hydra-help")
    assert "hydra.searchpath=[file:///path/to/my_conf]" in text


def test_every_shipped_group_is_listed_with_all_its_options():
    entries = group_entries(help_text())
    options_of = {head.split(" ")[0].lstrip("+"): text for head, text in entries.items()}
    folders = [f for f in CONF_DIR.iterdir() if f.is_dir() and f.name != "hydra"]
    assert {f.name for f in folders if any(f.glob("*.yaml"))} == set(options_of)
    for folder in folders:
        for path in folder.glob("*.yaml"):
            assert path.stem in options_of[folder.name].split(", "), (folder.name, path.stem)
    assert "loss (default: multi_similarity)" in entries
    assert "self_supervised (default: none)" in entries


def test_groups_show_their_default_or_how_to_add_them(tmp_path):
    conf = tmp_path / "conf"
    for group, option in (
        ("loss", "b"),
        ("loss", "a"),
        ("miner", "m"),
        ("extra", "x"),
        ("hydra/launcher", "slurm"),
    ):
        (conf / group).mkdir(parents=True, exist_ok=True)
        (conf / group / f"{option}.yaml").write_text("name: X\n")
    (conf / "notes").mkdir()
    (conf / "config.yaml").write_text(
        "defaults:\n  - _self_\n  - loss: a\n  - miner: null\n  - override hydra/launcher: slurm\n"
    )
    assert group_entries(help_text(conf)) == {
        "+extra": "x",
        "loss (default: a)": "a, b",
        "miner (default: none)": "m",
    }


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_composes_and_passes_the_config_check(example):
    """Each run of an example (each combination of a -m sweep) is a valid config that has the
    values the example sets."""
    assert len(EXAMPLES) == 3
    arguments = [a for a in example.split()[1:] if a != "-m"]
    choices = [[f"{a.split('=')[0]}={v}" for v in a.split("=", 1)[1].split(",")] for a in arguments]
    for overrides in itertools.product(*choices):
        cfg = compose_config(list(overrides))
        check_config(cfg)
        for key, value in (override.split("=", 1) for override in overrides):
            if key not in GROUPS:
                assert str(OmegaConf.select(cfg, key)) == value


GROUPS = {folder.name for folder in CONF_DIR.iterdir() if folder.is_dir()}
