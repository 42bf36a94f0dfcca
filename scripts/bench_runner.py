"""One training epoch of `metric-run` (the trainer with the runner's per-step callbacks)
against a hand-written torch loop over the same batches.

Both train the same model from the same state on the same batches (the sampler's indices for
epoch 1) with the same loss and miner; the hand-written loop indexes the tensors directly and
does nothing else. The runner's epoch is `trainer.train(1, 1)` with its per-step callbacks
(step counting and loss, learning rates, TensorBoard); evaluation and checkpoints are left out
(they are per-epoch work, the same in any loop). A third contender, the trainer alone (its
hooks doing nothing), separates the trainer's own cost from the callbacks'. The epochs
alternate, and which goes first alternates too (bench_harness.alternating_seconds), so machine
noise hits all alike; the median of the per-round ratios (each epoch against the hand-written
epoch of the same round) is the steadiest figure on a busy machine.

    python scripts/bench_runner.py [overrides ...] [--repeats N] [--out PATH]

The self-supervised term is off (self_supervised=null) unless an override turns it on.
Target: ratio <= 1.03.
"""

import argparse
import copy
import statistics
import tempfile
from pathlib import Path

import torch
from bench_harness import (
    Table,
    add_out_argument,
    alternating_seconds,
    timing_summary,
    write_results,
)

from metric_runner.runner.callbacks import LearningRates, TensorBoardLog, TrainerHooks, TrainingLoss
from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import check_config, pick_device
from metric_runner.runner.processes import Processes
from metric_runner.runner.state import TrainingState
from metric_runner.runner.train import build_parts, build_trainer, seed_everything
from metric_runner.trainers.base_trainer import do_nothing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="metric-run overrides, e.g. loss=triplet")
    parser.add_argument("--repeats", type=int, default=7)
    add_out_argument(parser)
    args = parser.parse_args()

    cfg = compose_config(["self_supervised=null", *args.overrides])
    specs = check_config(cfg)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    parts = build_parts(cfg, specs, device, Processes())
    trainer = build_trainer(cfg, specs, parts, device, Processes())
    model = torch.nn.Sequential(parts.models["trunk"], parts.models["embedder"])
    loss_fn, miner = parts.loss, parts.mining_funcs.get("tuple_miner")
    optimizer, sampler = parts.optimizer, parts.sampler
    inputs, labels = (t.to(device) for t in parts.train_set.tensors)
    initial = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))

    def reset(seed):
        model.load_state_dict(initial[0])
        optimizer.load_state_dict(initial[1])
        sampler.set_epoch(1)
        torch.manual_seed(seed)

    def with_hooks(name, hooks):
        with_callbacks = name == "metric-run"
        trainer.end_of_iteration_hook = (
            hooks.end_of_iteration_hook if with_callbacks else do_nothing
        )
        trainer.end_of_epoch_hook = hooks.end_of_epoch_hook if with_callbacks else do_nothing

    def hand_written_epoch():
        model.train()
        for batch in torch.tensor(list(sampler)).split(sampler.local_batch_size):
            x, y = inputs[batch], labels[batch]
            embeddings = model(x)
            loss = loss_fn(embeddings, y, miner(embeddings, y) if miner else None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    with tempfile.TemporaryDirectory() as run_dir:
        state = TrainingState(parts.models, loss_fn, optimizer, None, trainer.grad_scaler, "", "")
        hooks = TrainerHooks(
            state, [TrainingLoss(), LearningRates(optimizer), TensorBoardLog(Path(run_dir))]
        )
        hooks.begin()
        timings = alternating_seconds(
            {
                "metric-run": lambda: trainer.train(1, 1),
                "trainer alone": lambda: trainer.train(1, 1),
                "hand-written": hand_written_epoch,
            },
            repeats=args.repeats,
            warmup=1,
            device=device,
            before_each=lambda name, round_number: (
                with_hooks(name, hooks),
                reset(seed=round_number),
            ),
        )
        hooks.end()

    batches = len(sampler) // sampler.local_batch_size
    summary = {name: timing_summary(times) for name, times in timings.items()}
    reference = summary["hand-written"]
    header = ["", "median ms", "fastest ms", "ratio of medians", "median of round ratios"]
    table = Table(f"one epoch, {batches} batches of {cfg.batch_size}", header)
    print(f"one epoch, {batches} batches of {cfg.batch_size}, {args.repeats} alternating repeats:")
    print(f"{'':16}{'median':>10}{'fastest':>10}{'ratio':>8}{'paired':>8}")
    for name, figures in summary.items():
        median_ms, fastest_ms = figures["median_s"] * 1e3, figures["fastest_s"] * 1e3
        ratio = figures["median_s"] / reference["median_s"]
        paired = statistics.median(
            ours / hand for ours, hand in zip(timings[name], timings["hand-written"])
        )
        summary[name]["median_round_ratio"] = paired
        print(f"  {name:14}{median_ms:8.1f}ms{fastest_ms:8.1f}ms{ratio:8.3f}{paired:8.3f}")
        table.add(name, f"{median_ms:.1f}", f"{fastest_ms:.1f}", f"{ratio:.3f}", f"{paired:.3f}")
    print("  target: metric-run <= 1.03 x hand-written")
    results = {"overrides": args.overrides, "seconds": timings, "summary": summary}
    write_results(args.out, "bench_runner", [table], results, device=device)


if __name__ == "__main__":
    main()
