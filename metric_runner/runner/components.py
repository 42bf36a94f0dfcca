"""From a composed config to checked specs (before any data is loaded) and built parts."""

import importlib
import inspect
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from ..datasets.base_dataset import DatasetNotFoundError
from ..datasets.batch_decode import DECODE_MODES
from .callbacks.self_supervised_term import SelfSupervisedTerm
from .data import Loading, loader_settings, loading
from .registry import ConfigError, Spec, constructor_parameters, parse

MODES = ("train", "test")
# What the runner tells a loss about the data and model (P2SGradLoss calls the embedding size
# descriptors_dim, as PML does).
LOSS_CONTEXT = ("num_classes", "embedding_size", "descriptors_dim")
EVAL_SPLITS = ("val", "test")
# What the runner gives a trainer (the trainer block sets the rest: freeze_trunk_batchnorm,
# iterations_per_epoch, loss_weights, ...); a block's `models`/`loss_funcs` add parts.
TRAINER_CONTEXT = (
    "models",
    "optimizers",
    "batch_size",
    "loss_funcs",
    "dataset",
    "mining_funcs",
    "data_device",
    "sampler",
    "collate_fn",
    "data_and_label_getter",
    "lr_schedulers",
    "dataloader_num_workers",
    "end_of_iteration_hook",
    "end_of_epoch_hook",
    "mixed_precision",
    "check_finite_loss",
    "pin_memory",
    "extra_loss_terms",
)
# The parts a trainer block may add, sized by the runner like the model and loss.
PART_CONTEXT = ("in_features", "out_features", "num_classes", "embedding_size")


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
    trainer: "TrainerSpecs | None"
    tester: Spec


@dataclass
class TrainerSpecs:
    """The trainer, and the models and losses its block adds to the runner's (e.g.
    TrainWithClassifier's classifier and classifier_loss)."""

    trainer: Spec
    models: dict
    loss_funcs: dict


def check_config(cfg: DictConfig) -> Specs:
    """Every component block checked against the registry and its constructor; run settings
    checked too. Raises ConfigError naming the first mistake."""
    for module in cfg.get("imports") or []:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(f"imports: cannot import {module!r} ({error})") from None
    check_run_settings(cfg)
    check_required_values(cfg)
    model = cfg.get("model") or {}
    if "trunk" not in model:
        raise ConfigError("model: needs a `trunk:` block (e.g. model=small_cnn)")
    check_decode((cfg.get("dataset") or {}).get("decode"))
    train = cfg.mode == "train"
    specs = Specs(
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
        trainer=parse_trainer(cfg.get("trainer")) if train else None,
        tester=parse("tester", cfg.get("tester"), provided=("data_device",)),
    )
    # The values are checked here, before any run directory exists (and in a sweep's up-front
    # check); train() and evaluate() resolve them for the run's device.
    loader_settings(cfg.num_workers, cfg.pin_memory, specs.dataset.cls, torch.device("cpu"))
    return specs


def parse_trainer(block: DictConfig | None) -> TrainerSpecs:
    if block is None:
        raise ConfigError("trainer: training needs a trainer (e.g. trainer=metric_loss_only)")
    block = dict(OmegaConf.to_container(block, resolve=True))
    models = block.pop("models", None) or {}
    losses = block.pop("loss_funcs", None) or {}
    return TrainerSpecs(
        trainer=parse("trainer", block, provided=TRAINER_CONTEXT),
        models={
            name: parse("model", spec, f"trainer.models.{name}", provided=PART_CONTEXT)
            for name, spec in models.items()
        },
        loss_funcs={
            name: parse("loss", spec, f"trainer.loss_funcs.{name}", provided=PART_CONTEXT)
            for name, spec in losses.items()
        },
    )


@dataclass
class SelfSupervised:
    """The auxiliary term `weight * loss(embeddings, model(augmentation(inputs)))`."""

    weight: float
    loss: Spec
    augmentation: Spec


def parse_self_supervised(block: DictConfig | None) -> SelfSupervised | None:
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


def build_self_supervised(
    spec: SelfSupervised | None, example: torch.Tensor
) -> SelfSupervisedTerm | None:
    """The auxiliary term the trainer adds to its losses, or None when it is off. The
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
    return SelfSupervisedTerm(spec.loss.build(), augment, spec.weight)


def check_decode(decode: str | None) -> None:
    """dataset.decode, checked before any data is loaded (None: the dataset has no such key)."""
    if decode is not None and decode not in DECODE_MODES:
        raise ConfigError(
            f"dataset.decode: {decode!r} is not a decode mode; use one of "
            f"{', '.join(DECODE_MODES)} (cpu: in the DataLoader workers, gpu: a batch at a time "
            "on the run's device, auto: gpu on CUDA runs)"
        )


def check_required_values(cfg: DictConfig) -> None:
    """Values a config leaves to the user (`???`, e.g. an image dataset's root) are named
    before anything runs, rather than reaching the dataset as the string '???'."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        needed = ", ".join(f"{key}=..." for key in missing)
        raise ConfigError(f"{missing[0]}: no value given; add {needed} to the command line")


def check_run_settings(cfg: DictConfig) -> None:
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
            f"(tester.include: {', '.join(map(str, include))})"
        )
    for key in ("log_stats", "save_checkpoints"):
        if not isinstance(cfg.get(key, True), bool):
            raise ConfigError(f"{key}: must be true or false, got {cfg[key]!r}")
    max_batches = cfg.get("max_batches_per_epoch")
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise ConfigError(
            f"max_batches_per_epoch: must be an integer >= 1 or null (all), got {max_batches!r}"
        )
    if cfg.resume and cfg.mode != "train":
        raise ConfigError("resume: only mode=train runs can be resumed")
    check_triplet_batches(cfg)


def check_triplet_batches(cfg: DictConfig) -> None:
    """FixedSetOfTriplets yields (anchor, positive, negative) triplets back to back: a batch
    size that is not a multiple of 3 would start every later batch mid-triplet, and the miner
    would silently train on shifted triplets."""
    sampler = cfg.get("sampler") or {}
    if sampler.get("name") in ("FixedSetOfTriplets", "fixed_set_of_triplets"):
        if cfg.batch_size % 3:
            raise ConfigError(
                f"batch_size: sampler=fixed_set_of_triplets needs a multiple of 3 (whole "
                f"triplets per batch), got {cfg.batch_size}; e.g. batch_size={cfg.batch_size // 3 * 3 or 3}"
            )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device: {error}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but no CUDA device is available; use device=auto")
    return device


def load_splits(dataset_spec: Spec, names: Iterable[str]) -> dict[str, Dataset]:
    try:
        splits = {name: dataset_spec.build(split=name) for name in names}
    except ConfigError as error:
        if not isinstance(error.__context__, DatasetNotFoundError):
            raise
        # The dataset's message speaks the library's language; say it in the runner's too.
        raise ConfigError(
            f"{error} (metric-run: dataset.root=PATH, or METRIC_RUNNER_DATA_DIR=DIR for the "
            "folders under paths.data_dir; dataset.download=true fetches)"
        ) from error.__context__
    for name, dataset in splits.items():
        if len(dataset) == 0:
            raise RunError(
                f"dataset: the {name} split is empty; check the dataset's folder and split"
            )
    return splits


def build_tester(
    spec: Spec, splits: Mapping[str, Dataset], device: torch.device, num_workers: int = 0
) -> tuple[Any, Loading]:
    """The tester for `device`, and how it reads `splits`: when they decode on the device, the
    tester gets the batch decoder as its data_and_label_getter, and its evaluate() takes the
    Loading's datasets and collate_fn. `num_workers` (the run's resolved setting) reads the
    evaluation splits unless the tester block sets its own dataloader_num_workers."""
    split_loading = loading(splits, device)
    if split_loading.decodes_batches and not takes_decoded_batches(spec.cls):
        raise ConfigError(
            f"dataset.decode: {spec.cls.__name__} cannot evaluate batches decoded on the device "
            "(it needs a data_and_label_getter argument and evaluate(..., collate_fn)); "
            "use dataset.decode=cpu or tester=knn"
        )
    getter = split_loading.data_and_label_getter
    tester = spec.build(
        data_device=device, data_and_label_getter=getter, dataloader_num_workers=num_workers
    )
    return tester, split_loading


def takes_decoded_batches(tester_class: type) -> bool:
    evaluate_parameters = inspect.signature(tester_class.evaluate).parameters
    return (
        "data_and_label_getter" in constructor_parameters(tester_class)
        and "collate_fn" in evaluate_parameters
    )


def build_model(specs: Specs, example_dataset: Dataset) -> tuple[torch.nn.Sequential, int]:
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


def probe(module: torch.nn.Module, example: torch.Tensor, where: str) -> torch.Tensor:
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


def build_loss(spec: Spec | None, num_classes: int, embedding_size: int) -> torch.nn.Module | None:
    """The supervised loss, sized for the data and model; None when there is none (a
    self-supervised-only run)."""
    if spec is None:
        return None
    return spec.build(
        num_classes=num_classes, embedding_size=embedding_size, descriptors_dim=embedding_size
    )


def parameter_groups(
    models: Mapping[str, torch.nn.Module], loss_fn: torch.nn.Module | None, loss_lr: float | None
) -> list[dict]:
    """The parameters of the models ({name: module}), and the loss's own (proxies, class
    weights) as a second group with its own learning rate."""
    groups = [{"name": "model", "params": [p for m in models.values() for p in m.parameters()]}]
    loss_parameters = (
        [] if loss_fn is None else [p for p in loss_fn.parameters() if p.requires_grad]
    )
    if loss_parameters:
        group = {"name": "loss", "params": loss_parameters}
        if loss_lr is not None:
            group["lr"] = loss_lr
        groups.append(group)
    return groups


def check_sampler_fits(cfg: DictConfig, labels: Sequence[int] | torch.Tensor) -> None:
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


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint path: a .pt file, or a run directory (its best checkpoint)."""
    path = Path(path).expanduser()
    return path / "checkpoints" / "best.pt" if path.is_dir() else path


def resolved_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
