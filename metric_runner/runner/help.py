"""`metric-run --help`: what the command does and which configs it has, before Hydra's flags.

The config groups and their options are read from the config folder, so the text lists every
shipped YAML without being edited when one is added.
"""

import textwrap
from pathlib import Path

from omegaconf import OmegaConf

from .registry import CONF_DIR

USAGE = """\
metric-run: train and evaluate deep-metric-learning models from Hydra configs.

Usage:
  metric-run [GROUP=OPTION ...] [KEY=VALUE ...]   train (no arguments: the digits, on CPU, about a minute)
  metric-run mode=test checkpoint=RUN_DIR         evaluate a saved model (a run directory or a .pt file)
  metric-run resume=RUN_DIR [epochs=N]            continue an interrupted run, or extend a finished one
  metric-run -m GROUP=A,B KEY=X,Y                 sweep: one run per combination (Hydra multirun)
  metric-run --list [KIND ...]                    every component, its arguments and defaults"""

EXAMPLES = (
    "metric-run loss=triplet miner=multi_similarity loss.margin=0.1",
    "metric-run mode=test checkpoint=runs/2026-12-07/12-00-00-000000",
    "metric-run -m loss=triplet,contrastive seed=0,1,2",
)

FOOTER = """\
Your own config groups: hydra.searchpath=[file:///path/to/my_conf] adds the groups in that
folder (my_conf/loss/my_loss.yaml -> loss=my_loss).
Hydra's own flags (--cfg job, --info, --multirun, --config-dir, ...): metric-run --hydra-help"""

WIDTH = 100


def help_text(conf_dir: Path = CONF_DIR) -> str:
    """The whole --help text: usage, the config groups of `conf_dir`, examples, Hydra's flags."""
    examples = "\n".join(f"  {example}" for example in EXAMPLES)
    return "\n\n".join([USAGE, config_groups_text(conf_dir), f"Examples:\n{examples}", FOOTER])


def config_groups_text(conf_dir: Path) -> str:
    """One entry per group: how to choose it, its default, and its options."""
    defaults = root_defaults(conf_dir)
    lines = [
        "Config groups (GROUP=OPTION picks one, GROUP=null drops it, KEY=VALUE sets a value;",
        "a group marked + is not in the defaults: add it with +GROUP=OPTION):",
    ]
    for group, options in config_groups(conf_dir).items():
        if group in defaults:
            chosen = defaults[group]
            head = f"  {group} (default: {'none' if chosen is None else chosen}): "
        else:
            head = f"  +{group}: "
        lines.append(
            textwrap.fill(
                ", ".join(options),
                width=WIDTH,
                initial_indent=head,
                subsequent_indent=" " * 6,
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)


def config_groups(conf_dir: Path) -> dict[str, list[str]]:
    """{group: sorted option names} for every folder of YAMLs; Hydra's own settings
    (conf/hydra/) are not a choice of the run."""
    return {
        folder.name: sorted(path.stem for path in folder.glob("*.yaml"))
        for folder in sorted(conf_dir.iterdir())
        if folder.is_dir() and folder.name != "hydra" and any(folder.glob("*.yaml"))
    }


def root_defaults(conf_dir: Path) -> dict[str, str | None]:
    """{group: default option (None for `group: null`)} from the root config's defaults list."""
    root = OmegaConf.load(conf_dir / "config.yaml")
    defaults = {}
    for entry in root.get("defaults") or []:
        if isinstance(entry, str):  # `_self_`, or a config of the root's own package
            continue
        for key, value in entry.items():
            defaults[str(key).removeprefix("override ")] = value
    return defaults
