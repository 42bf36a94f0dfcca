"""One training epoch of `metric-run` (the trainer with the runner's per-step callbacks)
against a hand-written torch loop over the same batches.

Both train the same model from the same state on the same batches (the sampler's indices for
epoch 1) with the same loss and miner; the hand-written loop indexes the tensors directly and
does nothing else. The runner's epoch is `trainer.train(1, 1)` with its per-step callbacks
(step counting and loss, learning rates, TensorBoard); evaluation and checkpoints are left out
(they are per-epoch work, the same in any loop). The epochs alternate, and which goes first
alternates too (bench_harness.alternating_seconds), so machine noise hits both alike; on a busy
machine the fastest epochs give the steadier ratio.

    python scripts/bench_runner.py [overrides ...] [--repeats N] [--out PATH]

The self-supervised term is off (self_supervised=null) unless an override turns it on.
Target: ratio <= 1.03.
"""

import argparse
import copy
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
        trainer.end_of_iteration_hook = hooks.end_of_iteration_hook
        trainer.end_of_epoch_hook = hooks.end_of_epoch_hook
        hooks.begin()
        timings = alternating_seconds(
            {"metric-run": lambda: trainer.train(1, 1), "hand-written": hand_written_epoch},
            repeats=args.repeats,
            warmup=1,
            device=device,
            before_each=lambda _name, round_number: reset(seed=round_number),
        )
        hooks.end()

    batches = len(sampler) // sampler.local_batch_size
    summary = {name: timing_summary(times) for name, times in timings.items()}
    ours, reference = summary["metric-run"], summary["hand-written"]
    median_ratio = ours["median_s"] / reference["median_s"]
    fastest_ratio = ours["fastest_s"] / reference["fastest_s"]
    table = Table(
        f"one epoch, {batches} batches of {cfg.batch_size}", ["", "median ms", "fastest ms"]
    )
    print(f"one epoch, {batches} batches of {cfg.batch_size}, {args.repeats} alternating repeats:")
    print(f"{'':14}{'median':>10}{'fastest':>10}")
    for name, figures in summary.items():
        median_ms, fastest_ms = figures["median_s"] * 1e3, figures["fastest_s"] * 1e3
        print(f"  {name:12}{median_ms:8.1f}ms{fastest_ms:8.1f}ms")
        table.add(name, f"{median_ms:.1f}", f"{fastest_ms:.1f}")
    print(f"  {'ratio':12}{median_ratio:10.3f}{fastest_ratio:10.3f}  (target <= 1.03)")
    table.add("ratio", f"{median_ratio:.3f}", f"{fastest_ratio:.3f}")
    results = {"overrides": args.overrides, "seconds": timings, "summary": summary}
    write_results(args.out, "bench_runner", [table], results, device=device)


if __name__ == "__main__":
    main()
