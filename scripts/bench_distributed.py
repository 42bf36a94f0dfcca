"""2 processes vs 1 on the same global batch (gloo, CPU): training-step throughput and the
share of the step spent in the wrappers' all_gather.

    python scripts/bench_distributed.py                      # defaults: batch 512, 200 steps
    python scripts/bench_distributed.py --global-batch 64 --steps 5 --repeats 1   # smoke run
    python scripts/bench_distributed.py --out results/distributed   # + .json and .md

One process trains a small MLP embedder with the plain loss (and miner) on the global batch;
two processes train the same model under DistributedDataParallel, each on half the batch, with
DistributedLossWrapper/DistributedMinerWrapper. Threads are split so both runs use the same
cores. all_gather is timed by wrapping torch.distributed.all_gather (DDP's gradient all-reduce
is not included: it is part of the step). With PML installed, its wrapper runs in the same
2-process job for a side-by-side column.
"""

import argparse
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from bench_harness import Table, add_out_argument, seconds, write_results

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from metric_runner import losses, miners  # noqa: E402
from metric_runner.utils import distributed as mr_dist  # noqa: E402

WORLD_SIZE = 2


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--global-batch", type=int, default=512)
    parser.add_argument("--input-dim", type=int, default=256)
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median counts")
    parser.add_argument("--loss", choices=["contrastive", "triplet_miner"], default="triplet_miner")
    parser.add_argument("--efficient", action="store_true")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="for all processes")
    add_out_argument(parser)
    args = parser.parse_args()
    if args.global_batch % WORLD_SIZE:
        parser.error(f"--global-batch must divide by {WORLD_SIZE} processes")
    return args


def make_model(args):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(args.input_dim, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, args.embedding_dim),
    )


def make_loss_and_miner(args, library):
    if args.loss == "contrastive":
        return library.losses.ContrastiveLoss(), None
    return library.losses.TripletMarginLoss(margin=0.1), library.miners.MultiSimilarityMiner()


class OurLibrary:
    losses, miners = losses, miners


def batches(args):
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(args.steps, args.global_batch, args.input_dim, generator=generator)
    labels = torch.randint(0, args.classes, (args.steps, args.global_batch), generator=generator)
    return inputs, labels


def train(model, loss_fn, miner, inputs, labels):
    """Seconds for all steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def all_steps():
        for x, y in zip(inputs, labels):
            embeddings = model(x)
            indices_tuple = None if miner is None else miner(embeddings, y)
            loss = loss_fn(embeddings, y, indices_tuple)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return seconds(all_steps)


def one_process(args):
    torch.set_num_threads(args.threads)
    inputs, labels = batches(args)
    loss_fn, miner = make_loss_and_miner(args, OurLibrary)
    train(make_model(args), loss_fn, miner, inputs[:2], labels[:2])  # warm-up
    return [train(make_model(args), loss_fn, miner, inputs, labels) for _ in range(args.repeats)]


class GatherTimer:
    """Wraps torch.distributed.all_gather to add up the time spent in it."""

    def __init__(self):
        self.seconds = 0.0
        self.original = dist.all_gather

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        result = self.original(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        return result


def wrapped(args, library, dist_module):
    loss_fn, miner = make_loss_and_miner(args, library)
    loss_fn = dist_module.DistributedLossWrapper(loss_fn, efficient=args.efficient)
    if miner is not None:
        miner = dist_module.DistributedMinerWrapper(miner, efficient=args.efficient)
    return loss_fn, miner


def timed_ddp_runs(args, rank, library, dist_module, timer):
    inputs, labels = batches(args)
    half = args.global_batch // WORLD_SIZE
    inputs = inputs[:, rank * half : (rank + 1) * half]
    labels = labels[:, rank * half : (rank + 1) * half]
    loss_fn, miner = wrapped(args, library, dist_module)
    runs = []
    for repeat in range(args.repeats + 1):  # the first is a warm-up
        model = torch.nn.parallel.DistributedDataParallel(make_model(args))
        steps = slice(0, 2) if repeat == 0 else slice(None)
        dist.barrier()
        timer.seconds = 0.0
        seconds = train(model, loss_fn, miner, inputs[steps], labels[steps])
        if repeat:
            runs.append((seconds, timer.seconds))
    return runs


def ddp_worker(rank, args, port, queue):
    torch.set_num_threads(max(1, args.threads // WORLD_SIZE))
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE
    )
    timer = GatherTimer()
    dist.all_gather = timer
    results = {"ours": timed_ddp_runs(args, rank, OurLibrary, mr_dist, timer)}
    try:
        import pytorch_metric_learning as pml
        from pytorch_metric_learning.utils import distributed as pml_dist
    except ImportError:
        pass
    else:
        results["pml"] = timed_ddp_runs(args, rank, pml, pml_dist, timer)
    dist.destroy_process_group()
    if rank == 0:
        queue.put(results)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_processes(args):
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(ddp_worker, args=(args, free_port(), queue), nprocs=WORLD_SIZE)
    return queue.get()


def main():
    args = parse_args()
    samples = args.global_batch * args.steps
    single_runs = one_process(args)
    single = statistics.median(single_runs)
    print(
        f"global batch {args.global_batch}, {args.steps} steps, loss {args.loss}, "
        f"efficient={args.efficient}, {args.threads} threads in all, median of {args.repeats}"
    )
    table = Table(
        "training-step throughput", ["run", "samples/s", "vs 1 process", "all_gather share"]
    )
    print(f"{'run':<28}{'samples/s':>12}{'vs 1 process':>14}{'all_gather share':>18}")
    print(f"{'1 process (plain loss)':<28}{samples / single:>12.0f}{1:>14.2f}{'-':>18}")
    table.add("1 process (plain loss)", f"{samples / single:.0f}", "1.00", "-")
    results = {"1 process": [{"seconds": s} for s in single_runs]}
    for name, runs in two_processes(args).items():
        seconds_median = statistics.median(s for s, _ in runs)
        gather_share = statistics.median(g / s for s, g in runs)
        label = f"2 processes ({name} wrapper)"
        print(
            f"{label:<28}{samples / seconds_median:>12.0f}{single / seconds_median:>14.2f}"
            f"{gather_share:>17.1%}"
        )
        table.add(
            label,
            f"{samples / seconds_median:.0f}",
            f"{single / seconds_median:.2f}",
            f"{gather_share:.1%}",
        )
        results[label] = [{"seconds": s, "all_gather_seconds": g} for s, g in runs]
    write_results(args.out, "bench_distributed", [table], results)


if __name__ == "__main__":
    main()
