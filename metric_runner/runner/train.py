"""The training workflow: `metric-run` with mode=train.

Reads top to bottom: check the config, load the data, build the parts and the trainer (the
library's, from the `trainer` group), attach the runner's behaviour as callbacks on its hooks,
restore the checkpoint being resumed, evaluate the untrained model, train, print the summary.
Under torchrun each process trains its share of every batch; rank 0 evaluates and writes.
"""

import logging
import math
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset, RandomSampler

from ..datasets.base_dataset import DatasetError
from ..samplers import HierarchicalSampler
from ..samplers.rank_share_sampler import RankShareSampler
from ..trainers import (
    BaseTrainer,
    MetricLossOnly,
    NonFiniteLossError,
    TrainWithClassifier,
    TwoStreamMetricLoss,
)
from ..utils import common_functions as c_f
from .batches import FlattenedBatches, trainer_dataset
from .callbacks import (
    Callback,
    Checkpointing,
    ComponentStats,
    EarlyStopping,
    Evaluation,
    LearningRates,
    MetricsLog,
    PlateauScheduler,
    ProgressBar,
    RecordKeeperLog,
    TensorBoardLog,
    TrainerHooks,
    TrainingLoss,
)
from .checkpoint import config_hash, differing_keys, load_checkpoint
from .components import (
    RunError,
    Specs,
    TrainerSpecs,
    build_loss,
    build_model,
    build_self_supervised,
    build_tester,
    check_config,
    check_sampler_fits,
    load_splits,
    parameter_groups,
    pick_device,
    probe,
    resolved_yaml,
)
from .data import LoaderSettings, loader_settings, loading, save_label_maps
from .processes import (
    Processes,
    join_process_group,
    launched_processes,
    leave_process_group,
    process_device,
    wrap_for_ddp,
)
from .record_stats import StatsRecorder, collecting_stats
from .registry import ConfigError
from .run_log import read_records, summary_table, training_columns, write_atomically
from .state import TrainingState

PLATEAU = torch.optim.lr_scheduler.ReduceLROnPlateau
COSINE = torch.optim.lr_scheduler.CosineAnnealingLR
EXTRA_TERM_LOSSES = (MetricLossOnly.calculate_loss, TrainWithClassifier.calculate_loss)
logger = logging.getLogger(__name__)


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    callbacks: Iterable[Callback] = (),
    on_built: Callable[["Parts"], None] | None = None,
) -> list[dict]:
    """Train as `cfg` says, writing checkpoints, metrics and the summary into `run_dir`.
    `callbacks`: more Callback objects, run after the runner's own on rank 0; `on_built(parts)`
    sees the built parts before training (tests, user code). Returns the metrics.jsonl records."""
    # ---- setup: everything is checked before any data is loaded
    specs = check_config(cfg)
    processes = launched_processes()
    join_process_group(processes)
    device = process_device(processes, pick_device(cfg.device))
    loader = loader_settings(cfg.num_workers, cfg.pin_memory, specs.dataset.cls, device)
    if processes.is_main:
        logger.info(
            "data loading: num_workers=%d, pin_memory=%s", loader.num_workers, loader.pin_memory
        )
    if processes.is_main:
        warn_of_frozen_random_statistics(cfg)
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    resumed = load_resumed_checkpoint(cfg) if cfg.resume else None
    if resumed is None and (checkpoints / "last.pt").exists():
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with resume={run_dir} "
            "or choose another hydra.run.dir"
        )
    processes.barrier()  # every process has checked the run directory before rank 0 writes
    seed_everything(cfg.seed)

    parts = build_parts(cfg, specs, device, processes, loader.num_workers)
    if on_built is not None:
        on_built(parts)
    trainer = build_trainer(cfg, specs, parts, device, processes, loader)
    state = TrainingState(
        models={**parts.models, **parts.extra_models},
        loss=parts.loss,
        optimizer=parts.optimizer,
        extra_optimizers=parts.extra_optimizers,
        scheduler=parts.scheduler,
        grad_scaler=trainer.grad_scaler,
        config_yaml=resolved_yaml(cfg),
        config_hash=config_hash(cfg),
    )
    if resumed is not None:
        planned = parts.scheduler.T_max if isinstance(parts.scheduler, COSINE) else None
        state.load_state_dict(resumed[1], resumed[0])
        replan_cosine(parts.scheduler, planned)
    own = runner_callbacks(cfg, parts, run_dir) if processes.is_main else []
    hooks = TrainerHooks(
        state,
        [*own, *(callbacks if processes.is_main else ())],
        agree=processes.rank0_decides if processes.distributed else None,
    )
    trainer.end_of_iteration_hook = hooks.end_of_iteration_hook
    trainer.end_of_epoch_hook = hooks.end_of_epoch_hook
    if processes.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(run_dir / "config.yaml", resolved_yaml(cfg))
        save_label_maps({"train": parts.train_set, **parts.eval_splits}, run_dir)

    # ---- training: epoch 0 is the untrained model
    hooks.begin()
    try:
        keep_going = hooks.end_of_epoch(0) if resumed is None else True
        next_epoch = state.progress.epoch + 1
        parts.sampler.set_epoch(next_epoch)
        if keep_going and next_epoch <= cfg.epochs:
            trainer.train(start_epoch=next_epoch, num_epochs=cfg.epochs)
    except NonFiniteLossError as error:
        step = error.iteration + 1
        raise RunError(
            f"loss is {error.losses.get('total_loss')} at epoch {error.epoch}, step {step} "
            f"(global step {state.progress.global_step + 1}); stopped before that update, and "
            f"{checkpoints / 'last.pt'} (epoch {error.epoch - 1}) is the last good checkpoint: "
            "lower optimizer.lr or check the data"
        ) from None
    except DatasetError as error:  # an image changed or deleted since the dataset was built
        raise RunError(f"{run_position(trainer, state)}: {data_error_line(error)}") from None
    finally:
        hooks.end()
    processes.barrier()

    # ---- summary
    records = read_records(run_dir / "metrics.jsonl")
    if processes.is_main:
        table = summary_table(
            training_columns(records, cfg.early_stopping.split, cfg.early_stopping.metric)
        )
        write_atomically(run_dir / "summary.md", f"# Run summary: {run_dir}\n\n{table}")
        print(f"\n{table}\nRun directory: {run_dir}")
    leave_process_group(processes)
    return records


def run_position(trainer: BaseTrainer, state: TrainingState) -> str:
    """Where the run was: the trainer's epoch and step, or the evaluation after an epoch (the
    end-of-epoch hooks start with state.progress.epoch = trainer.epoch; it lags while training)."""
    if state.progress.epoch != trainer.epoch:
        return f"epoch {trainer.epoch}, step {trainer.iteration + 1}"
    if trainer.epoch == 0:
        return "evaluating the untrained model"
    return f"evaluating after epoch {trainer.epoch}"


def data_error_line(error: DatasetError) -> str:
    """The error's own message. A DataLoader worker's error comes back as the same class built
    from the worker's whole traceback, which ends with that message after the class's name."""
    message = str(error)
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    qualified_name = f"{type(error).__module__}.{type(error).__qualname__}: "
    return message.rpartition(qualified_name)[2].strip() or message


class Parts:
    """What the config builds: data, models, loss, miner, sampler, optimizer, scheduler, tester,
    the self-supervised term and the statistics recorder."""


def warn_of_frozen_random_statistics(cfg: DictConfig) -> None:
    """Frozen BatchNorm statistics are those of the trunk's pretrained weights: a trunk that can
    take weights but was given none keeps the statistics of its random initialisation."""
    trunk = cfg.model.trunk
    frozen = (cfg.get("trainer") or {}).get("freeze_trunk_batchnorm")
    if frozen and "weights" in trunk and not trunk.weights and not cfg.resume:
        logger.warning(
            "trainer.freeze_trunk_batchnorm=true but model.trunk.weights is not set: the trunk "
            "starts from random weights and its BatchNorm statistics stay random; give the "
            "ImageNet weights (model.trunk.weights=FILE) as the MLRC presets expect"
        )


def build_parts(
    cfg: DictConfig,
    specs: Specs,
    device: torch.device,
    processes: Processes,
    num_workers: int = 0,
) -> Parts:
    """Datasets, model, losses, miners, optimizers and the tester (its evaluation splits read
    by `num_workers` DataLoader workers)."""
    parts = Parts()
    splits = load_splits(specs.dataset, ("train", "val", "test"))
    parts.train_set = splits.pop("train")
    parts.eval_splits = splits
    check_sampler_fits(cfg, parts.train_set.labels)
    model, parts.embedding_size = build_model(specs, parts.train_set)
    model.to(device)
    parts.models = dict(model.named_children())
    parts.num_classes = len(torch.unique(torch.as_tensor(parts.train_set.labels)))
    parts.sections = cascade_sections(specs.trainer, parts.embedding_size)
    with collecting_stats(cfg.log_stats):
        parts.loss_funcs, parts.mining_funcs = metric_losses_and_miners(specs, parts)
    for loss in parts.loss_funcs.values():
        loss.to(device)
    parts.loss = saved_losses(parts.loss_funcs)
    parts.stats_recorder = stats_recorder(parts) if cfg.log_stats else None
    parts.self_supervised = build_self_supervised(specs.self_supervised, parts.train_set[0][0])
    trunk_features = probe(parts.models["trunk"], parts.train_set[0][0].to(device), "model.trunk")
    parts.extra_models = {
        name: spec.build(**part_sizes(name, parts, trunk_features.shape[1])).to(device)
        for name, spec in specs.trainer.models.items()
    }
    parts.extra_losses = {
        name: spec.build(num_classes=parts.num_classes, embedding_size=parts.embedding_size)
        for name, spec in specs.trainer.loss_funcs.items()
    }
    parts.sampler = build_sampler(cfg, specs, parts.train_set, processes)
    parts.optimizer = specs.optimizer.build(
        params=parameter_groups(parts.models, parts.loss, cfg.loss_optimizer.lr)
    )
    # Each added model has its optimizer (a trainer may step them in turns, as
    # DeepAdversarialMetricLearning does with the generator's).
    parts.extra_optimizers = {
        f"{name}_optimizer": specs.optimizer.build(params=list(model.parameters()))
        for name, model in parts.extra_models.items()
    }
    parts.scheduler = specs.scheduler.build(optimizer=parts.optimizer) if specs.scheduler else None
    parts.tester, parts.eval_loading = build_tester(
        specs.tester, parts.eval_splits, device, num_workers
    )
    return parts


def cascade_sections(trainer_specs: TrainerSpecs, embedding_size: int) -> list[int] | None:
    """CascadedEmbeddings' embedding_sizes (checked against the embedder's output), else None."""
    sizes = trainer_specs.trainer.args.get("embedding_sizes")
    if sizes is not None and sum(sizes) != embedding_size:
        raise ConfigError(
            f"trainer.embedding_sizes: {list(sizes)} add up to {sum(sizes)}, but the model's "
            f"embeddings have {embedding_size} dimensions; make them add up to {embedding_size} "
            "(or change model.embedder.out_features)"
        )
    return sizes


def metric_losses_and_miners(specs: Specs, parts: Parts) -> tuple[dict, dict]:
    """The metric loss and miner as the trainer names them: metric_loss and tuple_miner, or
    one of each per section of a cascade (metric_loss_0, tuple_miner_0, ...)."""
    if parts.sections is None:
        named = [("", parts.embedding_size)]
    else:
        named = [(f"_{i}", size) for i, size in enumerate(parts.sections)]
    losses, miners = {}, {}
    for suffix, size in named:
        loss = build_loss(specs.loss, parts.num_classes, size)
        if loss is not None:
            losses[f"metric_loss{suffix}"] = loss
        if specs.miner:
            miners[f"tuple_miner{suffix}"] = specs.miner.build()
    return losses, miners


def saved_losses(loss_funcs: dict[str, torch.nn.Module]) -> torch.nn.Module | None:
    """The module whose state checkpoints keep: the metric loss, or all of a cascade's."""
    if len(loss_funcs) > 1:
        return torch.nn.ModuleDict(loss_funcs)
    return next(iter(loss_funcs.values()), None)


def stats_recorder(parts: Parts) -> StatsRecorder:
    if parts.sections is None:
        components = {
            "loss": parts.loss_funcs.get("metric_loss"),
            "miner": parts.mining_funcs.get("tuple_miner"),
        }
        return StatsRecorder(components)
    return StatsRecorder({**parts.loss_funcs, **parts.mining_funcs})


def part_sizes(name: str, parts: Parts, trunk_features: int) -> dict[str, int]:
    """in_features/out_features of a model a trainer block adds: a classifier maps embeddings
    (or its cascade section) to the classes; DeepAdversarialMetricLearning's generator maps a
    triplet of trunk outputs to one."""
    if name == "generator":
        return {"in_features": 3 * trunk_features, "out_features": trunk_features}
    in_features = parts.embedding_size
    if parts.sections is not None and name.startswith("classifier_"):
        in_features = parts.sections[int(name.rsplit("_", 1)[1])]
    return {"in_features": in_features, "out_features": parts.num_classes}


def build_sampler(
    cfg: DictConfig, specs: Specs, train_set: Dataset, processes: Processes
) -> RankShareSampler:
    """The global batches (the configured sampler, or plain shuffling) drawn from a generator
    of their own, each process's share of them."""
    generator = torch.Generator()
    if specs.sampler:
        global_sampler = specs.sampler.build(
            labels=train_set.labels,
            batch_size=cfg.batch_size,
            length_before_new_iter=len(train_set),
            generator=generator,
        )
    else:
        global_sampler = RandomSampler(train_set, generator=generator)
    if isinstance(global_sampler, HierarchicalSampler):  # it yields whole batches
        global_sampler = FlattenedBatches(global_sampler, cfg.batch_size)
    try:
        return RankShareSampler(
            global_sampler,
            cfg.batch_size,
            generator,
            seed=cfg.seed,
            num_replicas=processes.world_size,
            rank=processes.rank,
        )
    except ValueError as error:
        raise ConfigError(f"batch_size: {error}") from None


def build_trainer(
    cfg: DictConfig,
    specs: Specs,
    parts: Parts,
    device: torch.device,
    processes: Processes,
    loader: LoaderSettings | None = None,
) -> BaseTrainer:
    """`loader`: the resolved num_workers and pin_memory (None: resolved from `cfg`)."""
    if loader is None:
        loader = loader_settings(cfg.num_workers, cfg.pin_memory, specs.dataset.cls, device)
    models = {**parts.models, **parts.extra_models}
    loss_funcs, mining_funcs = dict(parts.loss_funcs), dict(parts.mining_funcs)
    if processes.distributed:
        from ..utils.distributed import DistributedLossWrapper, DistributedMinerWrapper

        models = wrap_for_ddp(models, device)
        loss_funcs = {name: DistributedLossWrapper(loss) for name, loss in loss_funcs.items()}
        mining_funcs = {name: DistributedMinerWrapper(m) for name, m in mining_funcs.items()}
    loss_funcs.update(parts.extra_losses)
    two_streams = issubclass(specs.trainer.trainer.cls, TwoStreamMetricLoss)
    try:
        dataset, collate_fn = trainer_dataset(parts.train_set, two_streams, cfg.seed)
    except ValueError as error:
        raise ConfigError(f"trainer: {error}") from None
    train_loading = loading({"train": parts.train_set}, device)
    if train_loading.decodes_batches:  # the workers read bytes; each batch decodes on `device`
        dataset, collate_fn = train_loading.datasets["train"], train_loading.collate_fn
    scheduler = parts.scheduler
    context = dict(
        models=models,
        optimizers={"trunk_optimizer": parts.optimizer, **parts.extra_optimizers},
        batch_size=parts.sampler.local_batch_size,
        iterations_per_epoch=iterations_per_epoch(cfg, parts.sampler),
        loss_funcs=loss_funcs,
        dataset=dataset,
        mining_funcs=mining_funcs,
        data_device=device,
        sampler=parts.sampler,
        collate_fn=collate_fn,
        data_and_label_getter=train_loading.data_and_label_getter,
        lr_schedulers={"trunk_scheduler_by_epoch": scheduler}
        if scheduler is not None and not isinstance(scheduler, PLATEAU)
        else {},
        dataloader_num_workers=loader.num_workers,
        mixed_precision=cfg.amp,
        check_finite_loss=True,
        # Byte strings gain nothing from pinning; decoded batches are made on the device.
        pin_memory=loader.pin_memory and not train_loading.decodes_batches,
    )
    trainer_spec = specs.trainer.trainer
    if parts.self_supervised is not None:
        check_takes_extra_terms(trainer_spec.cls)
        context["extra_loss_terms"] = {"self_supervised": parts.self_supervised}
        weights = trainer_spec.args.get("loss_weights")
        if weights is not None:  # the term carries its own weight (self_supervised.weight)
            weights = {**weights, "self_supervised": 1}
            trainer_spec = replace(
                trainer_spec, args={**trainer_spec.args, "loss_weights": weights}
            )
    # One optimizer over every parameter (a group per part) is deliberate: the trainer's
    # warning that there is no embedder_optimizer would only mislead.
    with quiet_logger(c_f.LOGGER):
        return trainer_spec.build(**context)


def iterations_per_epoch(cfg: DictConfig, sampler: RankShareSampler) -> int | None:
    """None (the trainer's own: one pass of the sampler), or max_batches_per_epoch's cap."""
    if cfg.get("max_batches_per_epoch") is None:
        return None
    return min(cfg.max_batches_per_epoch, len(sampler) // sampler.local_batch_size)


def check_takes_extra_terms(trainer_class: type[BaseTrainer]) -> None:
    """The trainers whose loss adds extra terms (the self-supervised one); others would
    silently train without it."""
    if trainer_class.calculate_loss not in EXTRA_TERM_LOSSES:
        raise ConfigError(
            f"self_supervised: {trainer_class.__name__} does not add extra loss terms; use "
            "trainer=metric_loss_only or trainer=train_with_classifier, or self_supervised=null"
        )


@contextmanager
def quiet_logger(logger: logging.Logger) -> Iterator[None]:
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def runner_callbacks(cfg: DictConfig, parts: Parts, run_dir: Path) -> list[Callback]:
    """The runner's behaviour, in the order it runs at the end of each epoch: the record's
    fields, evaluation, the schedule, the logs, checkpoints, early stopping, the progress bar."""
    monitor = (cfg.early_stopping.split, cfg.early_stopping.metric)
    callbacks = [TrainingLoss(), LearningRates(parts.optimizer)]
    if parts.stats_recorder is not None:
        callbacks.append(ComponentStats(parts.stats_recorder))
    callbacks.append(
        Evaluation(
            parts.tester,
            parts.eval_loading.datasets,
            parts.models["trunk"],
            parts.models.get("embedder"),
            every=cfg.eval_every,
            last_epoch=cfg.epochs,
            monitor=monitor,
            plot_dir=run_dir / "plots",
            collate_fn=parts.eval_loading.collate_fn,
        )
    )
    if isinstance(parts.scheduler, PLATEAU):
        callbacks.append(PlateauScheduler(parts.scheduler))
    callbacks.append(MetricsLog(run_dir / "metrics.jsonl", cfg.epochs, monitor[1]))
    if cfg.logger.tensorboard:
        callbacks.append(TensorBoardLog(run_dir))
    if cfg.logger.record_keeper:
        callbacks.append(RecordKeeperLog(run_dir / "logs"))
    if cfg.get("save_checkpoints", True):
        callbacks.append(Checkpointing(run_dir / "checkpoints"))
    callbacks += [EarlyStopping(cfg.early_stopping.patience, monitor), ProgressBar(cfg.epochs)]
    return callbacks


def load_resumed_checkpoint(cfg: DictConfig) -> tuple[Path, dict]:
    """(path, checkpoint) of the run being resumed, checked against this run's config."""
    path = Path(cfg.resume).expanduser() / "checkpoints" / "last.pt"
    if not path.is_file():
        raise ConfigError(f"resume: {path} not found; resume takes a metric-run run directory")
    state = load_checkpoint(path)
    keys = differing_keys(cfg, state["config"]) if state["config_hash"] != config_hash(cfg) else []
    if keys:
        raise ConfigError(
            f"resume: this config differs from the run's in {', '.join(keys)}; drop those "
            "overrides to continue the run, or start a new run"
        )
    return path, state


def replan_cosine(
    scheduler: torch.optim.lr_scheduler.LRScheduler | None, t_max: int | None
) -> None:
    """Resuming with a new `epochs` (a cosine schedule's T_max: ${epochs}) re-plans the cosine
    over the new total: from the resumed epoch on, the rates are those of a run planned for the
    new total from the start, lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2
    after t scheduler steps. Other schedulers continue from their saved state."""
    if t_max is None or scheduler.T_max == t_max:
        return
    scheduler.T_max = t_max
    progress = (1 + math.cos(math.pi * scheduler.last_epoch / t_max)) / 2
    rates = [
        scheduler.eta_min + (base - scheduler.eta_min) * progress for base in scheduler.base_lrs
    ]
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = rates  # what get_last_lr() reports until the next step


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
