"""The training workflow: `metric-run` with mode=train.

Reads top to bottom: check the config, load the data, build the parts (or restore them from
the checkpoint being resumed), evaluate the untrained model, then train epoch by epoch —
evaluate, checkpoint, maybe stop early — and print the summary.
"""

import math
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import RandomSampler
from tqdm.auto import tqdm

from .checkpoint import (
    config_hash,
    differing_keys,
    load_checkpoint,
    load_models,
    load_state,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from .components import (
    RunError,
    build_loss,
    build_model,
    build_self_supervised,
    check_config,
    check_sampler_fits,
    load_splits,
    parameter_groups,
    pick_device,
    resolved_yaml,
)
from .data import make_loader
from .record_stats import StatsRecorder, collecting_stats
from .registry import ConfigError
from .run_log import RunLog, summary_table, training_columns, write_atomically


def train(cfg, run_dir):
    """Train as `cfg` says, writing checkpoints, metrics and the summary into `run_dir`.
    Returns the metrics.jsonl records."""
    # ---- setup: everything is checked before any data is loaded
    specs = check_config(cfg)
    device = pick_device(cfg.device)
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    resumed = load_resumed_checkpoint(cfg) if cfg.resume else None
    if resumed is None and (checkpoints / "last.pt").exists():
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with resume={run_dir} "
            "or choose another hydra.run.dir"
        )
    seed_everything(cfg.seed)
    amp = cfg.amp and device.type == "cuda"  # CPU autocast would change the numbers, not the speed

    splits = load_splits(specs.dataset, ("train", "val", "test"))
    train_set = splits.pop("train")
    check_sampler_fits(cfg, train_set.labels)
    model, embedding_size = build_model(specs, train_set)
    model.to(device)
    num_classes = len(torch.unique(torch.as_tensor(train_set.labels)))
    with collecting_stats(cfg.log_stats):
        loss_fn = build_loss(specs.loss, num_classes, embedding_size)
        miner = specs.miner.build() if specs.miner else None
    if loss_fn is not None:
        loss_fn.to(device)
    stats_recorder = StatsRecorder({"loss": loss_fn, "miner": miner}) if cfg.log_stats else None
    self_supervised_loss = build_self_supervised(specs.self_supervised, model, train_set[0][0])
    sampler = (
        specs.sampler.build(
            labels=train_set.labels,
            batch_size=cfg.batch_size,
            length_before_new_iter=len(train_set),
        )
        if specs.sampler
        else RandomSampler(train_set)
    )
    loader = make_loader(train_set, cfg.batch_size, sampler, cfg.num_workers, pin(cfg, device))
    optimizer = specs.optimizer.build(
        params=parameter_groups(model, loss_fn, cfg.loss_optimizer.lr)
    )
    scheduler = specs.scheduler.build(optimizer=optimizer) if specs.scheduler else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    tester = specs.tester.build()
    progress = {
        "epoch": 0,
        "global_step": 0,
        "best_score": -math.inf,
        "best_epoch": 0,
        "stale_evals": 0,
    }

    if resumed is not None:
        path, state = resumed
        load_models(model, state, path)
        if loss_fn is not None:
            load_state(loss_fn, state["loss"], "loss", path)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["grad_scaler"])
        progress = dict(state["progress"])
        restore_rng_states(state["rng"])
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(run_dir / "config.yaml", resolved_yaml(cfg))
    log = RunLog(run_dir, keep_epochs_up_to=progress["epoch"] if resumed else None)

    def checkpoint_state():
        return {
            "models": {name: part.state_dict() for name, part in model.named_children()},
            "loss": loss_fn.state_dict() if loss_fn is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "grad_scaler": scaler.state_dict(),
            "progress": dict(progress),
            "epoch": progress["epoch"],
            "rng": rng_states(),
            "config": resolved_yaml(cfg),
            "config_hash": config_hash(cfg),
        }

    def learning_rates():
        return {group["name"]: group["lr"] for group in optimizer.param_groups}

    def evaluate_and_checkpoint(epoch, train_loss, stats=None, lrs=None):
        """Evaluate (when due), log, track the best score; save last.pt (and best.pt).
        `stats`: the epoch's mean component statistics (log_stats=true), logged with the
        evaluation; `lrs`: the rates the epoch trained with (before the scheduler's step).
        Returns True when early stopping says stop."""
        progress["epoch"] = epoch
        due = epoch % cfg.eval_every == 0 or epoch == cfg.epochs
        improved = False
        if due:
            # Per-class values are for mode=test; plots (tester.visualize) go to plots/.
            accuracies, _ = tester.evaluate(
                model, splits, device, plot_dir=run_dir / "plots", epoch=epoch
            )
            score = monitored_score(cfg, accuracies)
            improved = score > progress["best_score"]
            if improved:
                progress.update(best_score=score, best_epoch=epoch, stale_evals=0)
            else:
                progress["stale_evals"] += 1
            record = {
                "epoch": epoch,
                "global_step": progress["global_step"],
                "train_loss": train_loss,
                "lr": lrs or learning_rates(),
                "accuracies": accuracies,
            }
            if stats is not None:
                record["stats"] = stats
            log.log_evaluation(record)
            tqdm.write(evaluation_line(cfg, epoch, train_loss, accuracies))
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(score)
        state = checkpoint_state()
        if improved:  # best first: a run stopped in between redoes this epoch, losing nothing
            save_checkpoint(state, checkpoints / "best.pt")
        save_checkpoint(state, checkpoints / "last.pt")
        patience = cfg.early_stopping.patience
        return due and patience is not None and progress["stale_evals"] >= patience

    # ---- epoch 0: the untrained model
    if resumed is None:
        evaluate_and_checkpoint(0, train_loss=None)

    # ---- training
    def count_and_log_step(loss_value):
        progress["global_step"] += 1
        log.log_step(progress["global_step"], loss_value)
        if stats_recorder is not None:
            log.log_stats(progress["global_step"], stats_recorder.step())

    epochs = tqdm(
        range(progress["epoch"] + 1, cfg.epochs + 1),
        desc="epochs",
        initial=progress["epoch"],
        total=cfg.epochs,
        dynamic_ncols=True,
        disable=None,  # progress bars on terminals only; logs get one line per evaluation
    )
    for epoch in epochs:
        try:
            epoch_loss = train_epoch(
                model,
                loss_fn,
                miner,
                loader,
                optimizer,
                scaler,
                amp,
                count_and_log_step,
                epoch,
                self_supervised_loss,
            )
        except NonFiniteLoss as error:
            raise RunError(
                f"loss is {error.value} at epoch {epoch}, step {error.step} (global step "
                f"{progress['global_step'] + 1}); stopped before that update, and "
                f"{checkpoints / 'last.pt'} (epoch {epoch - 1}) is the last good checkpoint: "
                "lower optimizer.lr or check the data"
            ) from None
        trained_with = learning_rates()
        if scheduler is not None and not isinstance(
            scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
        ):
            scheduler.step()
        stats = stats_recorder.epoch_means() if stats_recorder is not None else None
        stop = evaluate_and_checkpoint(epoch, epoch_loss, stats, trained_with)
        epochs.set_postfix(loss=f"{epoch_loss:.4f}", best=f"{progress['best_score']:.4f}")
        if stop:
            tqdm.write(
                f"early stopping at epoch {epoch}: {cfg.early_stopping.split}/"
                f"{cfg.early_stopping.metric} did not improve for {cfg.early_stopping.patience} "
                f"evaluations (best {progress['best_score']:.4f} at epoch {progress['best_epoch']})"
            )
            break
    epochs.close()
    log.close()

    # ---- summary
    records = log.records()
    table = summary_table(
        training_columns(records, cfg.early_stopping.split, cfg.early_stopping.metric)
    )
    write_atomically(run_dir / "summary.md", f"# Run summary: {run_dir}\n\n{table}")
    print(f"\n{table}\nRun directory: {run_dir}")
    return records


class NonFiniteLoss(ArithmeticError):
    def __init__(self, step, value):
        super().__init__(f"loss is {value} at step {step}")
        self.step, self.value = step, value


def train_epoch(
    model, loss_fn, miner, loader, optimizer, scaler, amp, on_step, epoch, self_supervised_loss=None
):
    """One pass over `loader`; returns the mean loss. `on_step(loss)` runs after each update;
    `self_supervised_loss(inputs, embeddings)`, when given, is added to the loss (`loss_fn` is
    None in a self-supervised-only run, which never reads the labels).
    A NaN/Inf loss raises NonFiniteLoss before it can update the model."""
    model.train()
    device = next(model.parameters()).device
    total = 0.0
    batches = tqdm(loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, disable=None)
    for step, (inputs, labels) in enumerate(batches, start=1):
        inputs = inputs.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=amp):
            embeddings = model(inputs)
            loss = 0
            if loss_fn is not None:
                labels = labels.to(device, non_blocking=True)
                indices_tuple = miner(embeddings, labels) if miner is not None else None
                loss = loss_fn(embeddings, labels, indices_tuple)
            if self_supervised_loss is not None:
                loss = loss + self_supervised_loss(inputs, embeddings)
        loss_value = loss.item()  # logged anyway; on CUDA the one sync per step buys the check
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(step, loss_value)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        on_step(loss_value)
        total += loss_value
    return total / len(loader)


def load_resumed_checkpoint(cfg):
    """The checkpoint of the run being resumed, checked against this run's config."""
    path = Path(cfg.resume).expanduser() / "checkpoints" / "last.pt"
    if not path.is_file():
        raise ConfigError(f"resume: {path} not found; resume takes a metric-run run directory")
    state = load_checkpoint(path)
    if state["config_hash"] != config_hash(cfg):
        keys = differing_keys(cfg, state["config"])
        raise ConfigError(
            f"resume: this config differs from the run's in {', '.join(keys)}; drop those "
            "overrides to continue the run, or start a new run"
        )
    return path, state


def evaluation_line(cfg, epoch, train_loss, accuracies):
    metric = cfg.early_stopping.metric
    loss = "untrained" if train_loss is None else f"train loss {train_loss:.4f}"
    scores = "  ".join(
        f"{split}/{metric} {m[metric]:.4f}" for split, m in accuracies.items() if metric in m
    )
    return f"epoch {epoch}/{cfg.epochs}  {loss}  {scores}"


def monitored_score(cfg, accuracies):
    split, metric = cfg.early_stopping.split, cfg.early_stopping.metric
    try:
        return accuracies[split][metric]
    except KeyError:
        raise ConfigError(
            f"early_stopping: the tester reported no {split}/{metric}; "
            f"it reports {sorted(accuracies.get(split, {}))}"
        ) from None


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pin(cfg, device):
    return bool(cfg.pin_memory) and device.type == "cuda"
