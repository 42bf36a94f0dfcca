"""The test workflow: `metric-run mode=test checkpoint=PATH` evaluates a saved model only."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.tensorboard import SummaryWriter

from .callbacks.tensorboard_log import write_evaluation
from .checkpoint import flatten, load_checkpoint, load_models
from .components import (
    Specs,
    build_model,
    build_tester,
    check_config,
    check_run_settings,
    checkpoint_file,
    load_splits,
    pick_device,
)
from .data import loader_settings
from .run_log import append_record, markdown_table, summary_table

# What was trained and how it is scored: mode=test takes these from the checkpoint's config.
SAVED_SECTIONS = ("model", "dataset", "transform", "tester")


def evaluate_checkpoint(
    cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Evaluate the checkpoint's model on val and test; writes metrics.jsonl and summary.md
    into `run_dir` (with tester.return_per_class, the per-class values too; with
    tester.visualize, a scatter plot PNG per split). Returns the evaluation record.

    The model, dataset, transform and tester are the checkpoint's (its saved config), except
    what `overrides` (the command line's; by default command_line_overrides) set."""
    overrides = command_line_overrides(cfg) if overrides is None else overrides
    specs, state, path = checked_test_config(cfg, overrides)
    device = pick_device(cfg.device)
    splits = load_splits(specs.dataset, ("val", "test"))
    model, _ = build_model(specs, splits["test"])
    models = dict(model.named_children())
    load_models(models, state, path)
    model.to(device)
    loader = loader_settings(cfg.num_workers, cfg.pin_memory, specs.dataset.cls, device)
    tester, split_loading = build_tester(specs.tester, splits, device, loader.num_workers)
    decoding = {"collate_fn": split_loading.collate_fn} if split_loading.decodes_batches else {}

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    accuracies, per_class = tester.evaluate(
        split_loading.datasets,
        state["epoch"],
        models["trunk"],
        models.get("embedder"),
        plot_dir=run_dir,
        **decoding,
    )
    record = {"epoch": state["epoch"], "checkpoint": str(path), "accuracies": accuracies}
    if per_class is not None:
        record["per_class"] = per_class = with_dataset_classes(per_class, splits)
    append_record(run_dir / "metrics.jsonl", record)
    with SummaryWriter(log_dir=str(run_dir)) as writer:
        write_evaluation(writer, record)
    table = summary_table({f"checkpoint (epoch {state['epoch']})": record})
    if per_class is not None:
        table += "\n" + per_class_tables(per_class)
    (run_dir / "summary.md").write_text(f"# Test of {path}\n\n{table}")
    print(f"\n{table}\nRun directory: {run_dir}")
    return record


def command_line_overrides(cfg: DictConfig) -> list[str]:
    """Hydra's task overrides; a config composed without Hydra's app (`run(compose_config(...))`)
    has none to show, so the keys of SAVED_SECTIONS that differ from the default config stand
    in for them (a section whose keys differ: a group choice, the whole section)."""
    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    from .cli import compose_config  # cli imports this module

    default = compose_config()
    overrides = []
    for section in SAVED_SECTIONS:
        mine, theirs = (flat_section(c, section) for c in (cfg, default))
        if mine.keys() != theirs.keys():
            overrides.append(f"{section}=")
        else:
            overrides += [f"{key}=" for key in mine if mine[key] != theirs[key]]
    return overrides


def flat_section(cfg: DictConfig, section: str) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True).get(section) or {}
    return flatten(container, f"{section}.")


def checked_test_config(
    cfg: DictConfig, overrides: list[str], report: bool = True
) -> tuple[Specs, dict[str, Any], Path]:
    """The specs of what mode=test runs (cfg with the checkpoint's sections, see
    with_saved_sections), the checkpoint and its path. Raises ConfigError / CheckpointError."""
    check_run_settings(cfg)
    path = checkpoint_file(cfg.checkpoint)
    state = load_checkpoint(path)
    return check_config(with_saved_sections(cfg, state["config"], overrides, report)), state, path


def forced_section_keys(overrides: list[str]) -> list[str]:
    """mode=test's command line for Hydra: a key of a saved section typed without its group
    choice (`dataset.decode=cpu`) changes the checkpoint's section, whose keys the default
    config's section (the digits) may lack; `++` lets Hydra compose it all the same."""
    keys = [o.split("=", 1)[0] for o in overrides]
    chosen = {key.lstrip("+~") for key in keys if "." not in key}
    return [
        f"++{override}"
        if "=" in override
        and "." in key
        and not key.startswith(("+", "~"))
        and key.split(".")[0] in SAVED_SECTIONS
        and key.split(".")[0] not in chosen
        else override
        for override, key in zip(overrides, keys)
    ]


def with_saved_sections(
    cfg: DictConfig, saved_yaml: str, overrides: list[str], report: bool = True
) -> DictConfig:
    """cfg with SAVED_SECTIONS taken from the checkpoint's config, except the keys `overrides`
    set (a group choice such as `model=mlp`: its whole section); with `report`, prints one
    line naming those."""
    saved = OmegaConf.create(saved_yaml)
    typed = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    typed = [key for key in typed if key.split(".")[0] in SAVED_SECTIONS]
    merged = cfg.copy()
    with open_dict(merged):
        for section in (s for s in SAVED_SECTIONS if s not in typed):
            if section in saved:
                merged[section] = saved[section]
            else:
                merged.pop(section, None)
        for key in (k for k in typed if "." in k):
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False)
    if typed and report:
        print(f"mode=test: from the command line instead of the checkpoint: {', '.join(typed)}")
    return merged


def with_dataset_classes(
    per_class: dict[str, dict[str, dict[str, Any]]], splits: Mapping[str, Any]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Each row also names the dataset's own class (`dataset_class`: CUB's 101, not the run's
    label 0) where the split renumbered its labels (its `label_map`, also in label_map.json)."""
    named = {}
    for split, rows in per_class.items():
        label_map = getattr(splits[split], "label_map", None)
        originals = label_map["label"] if label_map else None
        named[split] = {
            label: row if originals is None else {"dataset_class": originals[int(label)], **row}
            for label, row in rows.items()
        }
    return named


def per_class_tables(per_class: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown: per split, a row per class with its number of queries and each metric (and
    the dataset's own class where the run renumbered the labels)."""
    sections = []
    for split, rows in per_class.items():
        first = next(iter(rows.values()), {})
        named = ["dataset_class"] if "dataset_class" in first else []
        metrics = [m for m in first if m not in ("queries", "dataset_class")]
        table = [["class", *[n.replace("_", " ") for n in named], "queries", *metrics]]
        for label, row in rows.items():
            numbers = (f"{row[m]:.4f}" for m in metrics)
            table.append([label, *(row[n] for n in named), row["queries"], *numbers])
        sections.append(f"## {split}, per class\n\n{markdown_table(table)}\n")
    return "\n".join(sections)
