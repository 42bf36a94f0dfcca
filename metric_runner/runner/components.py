"""From a composed config to checked specs (before any data is loaded) and built parts."""

import importlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .registry import ConfigError, Spec, parse

MODES = ("train", "test")
# What the runner tells a loss about the data and model (P2SGradLoss calls the embedding size
# descriptors_dim, as PML does).
LOSS_CONTEXT = ("num_classes", "embedding_size", "descriptors_dim")
EVAL_SPLITS = ("val", "test")


class RunError(RuntimeError):
    """A run that cannot go on (bad data, a diverged loss); metric-run reports one line."""


@dataclass
class Specs:
    dataset: Spec
    trunk: Spec
    embedder: Spec | None
    loss: Spec | None
    self_supervised: "SelfSupervised | None"
    miner: Spec | None
    sampler: Spec | None
    optimizer: Spec | None
    scheduler: Spec | None
    tester: Spec


def check_config(cfg):
    """Every component block checked against the registry and its constructor; run settings
    checked too. Raises ConfigError naming the first mistake."""
    for module in cfg.get("imports") or []:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(f"imports: cannot import {module!r} ({error})") from None
    check_run_settings(cfg)
    model = cfg.get("model") or {}
    if "trunk" not in model:
        raise ConfigError("model: needs a `trunk:` block (e.g. model=small_cnn)")
    train = cfg.mode == "train"
    return Specs(
        dataset=parse("dataset", cfg.get("dataset"), provided=("split",)),
        trunk=parse("model", model.trunk, "model.trunk", provided=("in_channels", "in_features")),
        embedder=parse("model", model.get("embedder"), "model.embedder", provided=("in_features",)),
        loss=parse("loss", cfg.get("loss"), provided=LOSS_CONTEXT) if train else None,
        self_supervised=parse_self_supervised(cfg.get("self_supervised")) if train else None,
        miner=parse("miner", cfg.get("miner")) if train else None,
        sampler=parse(
            "sampler",
            cfg.get("sampler"),
            provided=("labels", "batch_size", "length_before_new_iter"),
        )
        if train
        else None,
        optimizer=parse("optimizer", cfg.get("optimizer"), provided=("params",)) if train else None,
        scheduler=parse("scheduler", cfg.get("scheduler"), provided=("optimizer",))
        if train
        else None,
        tester=parse("tester", cfg.get("tester")),
    )


@dataclass
class SelfSupervised:
    """The auxiliary term `weight * loss(embeddings, model(augmentation(inputs)))`."""

    weight: float
    loss: Spec
    augmentation: Spec


def parse_self_supervised(block):
    if block is None:
        return None
    missing = {"weight", "loss", "augmentation"} - set(block)
    extra = set(block) - {"weight", "loss", "augmentation"}
    if missing or extra:
        raise ConfigError(
            "self_supervised: needs exactly the keys weight, loss and augmentation"
            + (f"; missing {', '.join(sorted(missing))}" if missing else "")
            + (f"; unknown {', '.join(sorted(extra))}" if extra else "")
        )
    weight = block.weight
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
        raise ConfigError(
            f"self_supervised.weight: must be a number > 0, got {weight!r} "
            "(self_supervised=null turns the term off)"
        )
    return SelfSupervised(
        weight=float(weight),
        loss=parse("loss", block.loss, "self_supervised.loss"),
        augmentation=parse("augmentation", block.augmentation, "self_supervised.augmentation"),
    )


def build_self_supervised(spec, model, example):
    """The auxiliary term as a function of (inputs, embeddings), or None when it is off. The
    augmentation is tried on `example` first, so inputs it cannot take fail before training."""
    if spec is None:
        return None
    augment = spec.augmentation.build()
    try:
        with torch.no_grad():
            augmented = augment(example.unsqueeze(0))
    except (RuntimeError, ValueError) as error:
        raise ConfigError(
            f"self_supervised.augmentation: cannot take the dataset's inputs of shape "
            f"{tuple(example.shape)}: {str(error).strip().splitlines()[0]}; choose another "
            "augmentation or turn the term off with self_supervised=null"
        ) from None
    if augmented.shape[1:] != example.shape:
        raise ConfigError(
            f"self_supervised.augmentation: must keep the input shape {tuple(example.shape)}, "
            f"got {tuple(augmented.shape[1:])}"
        )
    loss_fn = spec.loss.build()

    def self_supervised_loss(inputs, embeddings):
        return spec.weight * loss_fn(embeddings, model(augment(inputs)))

    return self_supervised_loss


def check_run_settings(cfg):
    if cfg.mode not in MODES:
        raise ConfigError(f"mode: must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if cfg.mode == "train" and cfg.get("loss") is None:
        if cfg.get("self_supervised") is None:
            raise ConfigError(
                "loss: training needs a loss (e.g. loss=triplet), a self-supervised term "
                "(self_supervised=simclr), or both"
            )
        if cfg.get("miner") is not None:
            raise ConfigError(
                "miner: there is no loss to mine pairs for (loss=null); use miner=null"
            )
    if cfg.mode == "train" and cfg.get("optimizer") is None:
        raise ConfigError("optimizer: training needs an optimizer (e.g. optimizer=adam)")
    if cfg.mode == "test" and not cfg.get("checkpoint"):
        raise ConfigError(
            "checkpoint: mode=test needs checkpoint=PATH (a .pt file or a run directory)"
        )
    for key, smallest in (("epochs", 0), ("batch_size", 1), ("eval_every", 1)):
        if not isinstance(cfg[key], int) or cfg[key] < smallest:
            raise ConfigError(f"{key}: must be an integer >= {smallest}, got {cfg[key]!r}")
    early_stopping = cfg.early_stopping
    if early_stopping.split not in EVAL_SPLITS:
        raise ConfigError(
            f"early_stopping.split: must be one of {', '.join(EVAL_SPLITS)}, got {early_stopping.split!r}"
        )
    include = (cfg.get("tester") or {}).get("include")
    if include is not None and early_stopping.metric not in include:
        raise ConfigError(
            f"early_stopping.metric: {early_stopping.metric!r} is not computed by the tester "
            f"(tester.include: {', '.join(include)})"
        )
    if not isinstance(cfg.log_stats, bool):
        raise ConfigError(f"log_stats: must be true or false, got {cfg.log_stats!r}")
    if cfg.resume and cfg.mode != "train":
        raise ConfigError("resume: only mode=train runs can be resumed")


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device: {error}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but no CUDA device is available; use device=auto")
    return device


def load_splits(dataset_spec, names):
    splits = {name: dataset_spec.build(split=name) for name in names}
    for name, dataset in splits.items():
        if len(dataset) == 0:
            raise RunError(
                f"dataset: the {name} split is empty; check the dataset's folder and split"
            )
    return splits


def build_model(specs, example_dataset):
    """trunk (sized from one example input) followed by the embedder (sized from the trunk)."""
    example = example_dataset[0][0]
    trunk = specs.trunk.build(in_channels=example.shape[0], in_features=example.numel())
    trunk_output = probe(trunk, example, "model.trunk")
    layers = OrderedDict(trunk=trunk)
    if specs.embedder is not None:
        layers["embedder"] = specs.embedder.build(in_features=trunk_output.shape[1])
    model = torch.nn.Sequential(layers)
    embedding = probe(model, example, "model")
    return model, embedding.shape[1]


def probe(module, example, where):
    """Run one example through `module`, so a shape mismatch is reported before training."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            output = module(example.unsqueeze(0))
    except (RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ConfigError(
            f"{where}: cannot take the dataset's inputs of shape {tuple(example.shape)}: {first_line}"
        ) from None
    finally:
        module.train(was_training)
    if output.ndim != 2:
        raise ConfigError(
            f"{where}: must output (batch, features), got shape {tuple(output.shape)} for one input"
        )
    return output


def build_loss(spec, num_classes, embedding_size):
    """The supervised loss, sized for the data and model; None when there is none (a
    self-supervised-only run)."""
    if spec is None:
        return None
    return spec.build(
        num_classes=num_classes, embedding_size=embedding_size, descriptors_dim=embedding_size
    )


def parameter_groups(model, loss_fn, loss_lr):
    """The model's parameters, and the loss's own (proxies, class weights) as a second group
    with its own learning rate."""
    groups = [{"name": "model", "params": list(model.parameters())}]
    loss_parameters = (
        [] if loss_fn is None else [p for p in loss_fn.parameters() if p.requires_grad]
    )
    if loss_parameters:
        group = {"name": "loss", "params": loss_parameters}
        if loss_lr is not None:
            group["lr"] = loss_lr
        groups.append(group)
    return groups


def check_sampler_fits(cfg, labels):
    """A class with fewer samples than the sampler's m would be repeated within every batch."""
    m = (cfg.get("sampler") or {}).get("m")
    if m is None:
        return
    classes, counts = torch.unique(torch.as_tensor(labels), return_counts=True)
    too_small = counts < m
    if too_small.any():
        smallest = int(counts.min())
        raise RunError(
            f"sampler.m={m} but training class {classes[too_small][0].item()!r} has only "
            f"{int(counts[too_small][0])} samples ({int(too_small.sum())} classes have fewer than "
            f"{m}): use sampler.m={smallest} or less, or remove the small classes"
        )


def checkpoint_file(path):
    """A checkpoint path: a .pt file, or a run directory (its best checkpoint)."""
    path = Path(path).expanduser()
    return path / "checkpoints" / "best.pt" if path.is_dir() else path


def resolved_yaml(cfg):
    return OmegaConf.to_yaml(cfg, resolve=True)
