"""One training epoch of `metric-run` (default config) against a hand-written torch loop.

Both train the same model on the same batches (the sampler's indices) with the same loss and
miner; the hand-written loop indexes the tensors directly and does nothing else. The epochs
alternate, so machine noise hits both alike; on a busy machine the fastest epochs give the
steadier ratio.

    python scripts/bench_runner.py [overrides ...] [--repeats N]

Target: ratio <= 1.05.
"""

import argparse
import copy
import statistics
import tempfile
import time

import torch

from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import (
    build_loss,
    build_model,
    check_config,
    load_splits,
    parameter_groups,
)
from metric_runner.runner.data import make_loader
from metric_runner.runner.run_log import RunLog
from metric_runner.runner.train import train_epoch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="metric-run overrides, e.g. loss=triplet")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    cfg = compose_config(args.overrides)
    specs = check_config(cfg)
    torch.manual_seed(cfg.seed)
    train_set = load_splits(specs.dataset, ("train",))["train"]
    model, embedding_size = build_model(specs, train_set)
    num_classes = len(torch.unique(train_set.labels))
    loss_fn = build_loss(specs.loss, num_classes, embedding_size)
    miner = specs.miner.build() if specs.miner else None
    sampler = specs.sampler.build(
        labels=train_set.labels, batch_size=cfg.batch_size, length_before_new_iter=len(train_set)
    )
    optimizer = specs.optimizer.build(
        params=parameter_groups(model, loss_fn, cfg.loss_optimizer.lr)
    )
    loader = make_loader(train_set, cfg.batch_size, sampler)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    initial = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
    inputs, labels = train_set.tensors

    def reset(seed):
        model.load_state_dict(initial[0])
        optimizer.load_state_dict(initial[1])
        torch.manual_seed(seed)

    def runner_epoch(log):
        steps = iter(range(1, len(loader) + 1))
        train_epoch(
            model,
            loss_fn,
            miner,
            loader,
            optimizer,
            scaler,
            False,
            lambda loss: log.log_step(next(steps), loss),
            epoch=1,
        )

    def hand_written_epoch():
        model.train()
        for batch in torch.tensor(list(sampler)).split(cfg.batch_size):
            x, y = inputs[batch], labels[batch]
            embeddings = model(x)
            loss = loss_fn(embeddings, y, miner(embeddings, y) if miner else None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    with tempfile.TemporaryDirectory() as run_dir:
        log = RunLog(run_dir)
        timings = {"metric-run": [], "hand-written": []}
        for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
            for name, epoch in (
                ("metric-run", lambda: runner_epoch(log)),
                ("hand-written", hand_written_epoch),
            ):
                reset(seed=repeat)
                start = time.perf_counter()
                epoch()
                if repeat:
                    timings[name].append(time.perf_counter() - start)
        log.close()

    print(
        f"one epoch, {len(loader)} batches of {cfg.batch_size}, {args.repeats} alternating repeats:"
    )
    print(f"{'':14}{'median':>10}{'fastest':>10}")
    for name, times in timings.items():
        print(f"  {name:12}{statistics.median(times) * 1e3:8.1f}ms{min(times) * 1e3:8.1f}ms")
    median_ratio = statistics.median(timings["metric-run"]) / statistics.median(
        timings["hand-written"]
    )
    fastest_ratio = min(timings["metric-run"]) / min(timings["hand-written"])
    print(f"  {'ratio':12}{median_ratio:10.3f}{fastest_ratio:10.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
