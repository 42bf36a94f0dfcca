"""Forward+backward time and peak memory of every loss and miner, side by side with
pytorch-metric-learning (PML) when it is installed.

    python scripts/bench_losses.py                       # batch 128, 512, 1024
    python scripts/bench_losses.py --only TripletMarginLoss NTXentLoss --batch-sizes 1024
    python scripts/bench_losses.py --batch-sizes 512 --out results/losses   # + .json and .md

Every class exported from metric_runner.losses and metric_runner.miners is measured with its
default arguments on random embeddings (dimension 128, 4 samples per class); classification
losses are measured with 100 and with 10,000 classes. The "lower bound" row is the N×N
distance matrix forward+backward alone. Ratios are ours / PML (lower is better).

Peak memory (bench_harness.PeakMemory): on CUDA, the allocator's peak; on CPU, the process's
peak resident memory above its resident memory before the call (large allocations are forced
onto mmap so that freed memory goes back to the system between measurements).
"""

import argparse
import inspect
import os
import resource
import statistics
import sys

MMAP_THRESHOLD = "65536"
if os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD:
    os.environ["MALLOC_MMAP_THRESHOLD_"] = MMAP_THRESHOLD
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch  # noqa: E402
from bench_harness import (  # noqa: E402
    PeakMemory,
    Table,
    add_out_argument,
    process_status_bytes,
    repeated_seconds,
    seconds,
    write_results,
)

from metric_runner import losses as our_losses  # noqa: E402
from metric_runner import miners as our_miners  # noqa: E402
from metric_runner.runner.registry import constructor_parameters  # noqa: E402

try:
    from pytorch_metric_learning import losses as pml_losses
    from pytorch_metric_learning import miners as pml_miners
except ImportError:
    pml_losses = pml_miners = None

PER_CLASS = 4
CLASS_COUNTS_FOR_CLASSIFIERS = (100, 10_000)
# Memory the benchmark may use on top of what it holds at start: a case that needs more is
# reported as out of memory instead of pushing the machine into swap or the OOM killer.
MEMORY_HEADROOM_BYTES = 12 * 2**30
# A case faster than this is timed over several calls per measurement: a single call of a few
# microseconds is within the timer's own noise.
SHORTEST_TIMED_SECONDS = 1e-3
LOWER_BOUND = "lower bound: N×N distance fwd+bwd"
TABLE_HEADER = ["batch", "case", "ours ms", "PML ms", "ratio", "ours MB", "PML MB", "ratio"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--only", nargs="*", help="class names to measure (default: all)")
    parser.add_argument("--no-pml", action="store_true", help="skip the PML column")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--max-seconds", type=float, default=20.0, help="skip PML repeats past this"
    )
    add_out_argument(parser)
    return parser.parse_args()


def exported_classes(module, base):
    names = getattr(module, "__all__", None) or dir(module)
    found = {}
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, base) and not name.startswith("Base"):
            if name not in (
                "GenericPairLoss",
                "EmbeddingRegularizerMixin",
                "WeightRegularizerMixin",
            ):
                found[name] = obj
    return found


def constructor_kwargs(cls, dim, num_classes, library_losses):
    """Arguments a class cannot do without: sizes, and the inner loss of a wrapper."""
    params = constructor_parameters(cls)
    kwargs = {}
    if "num_classes" in params:
        kwargs["num_classes"] = num_classes
    for size_name in ("embedding_size", "descriptors_dim"):
        if size_name in params:
            kwargs[size_name] = dim
    if "l" in params and cls.__name__ == "ManifoldLoss":
        kwargs["l"] = dim
    if cls.__name__ == "RankedListLoss":  # no defaults; the paper's values
        kwargs.update(margin=0.4, Tn=10)
    if "loss" in params:
        kwargs["loss"] = library_losses.ContrastiveLoss()
    if "losses" in params:
        kwargs["losses"] = [library_losses.ContrastiveLoss(), library_losses.TripletMarginLoss()]
    return kwargs


def needs_classes(cls):
    return "num_classes" in constructor_parameters(cls)


def is_two_view_loss(name):
    return name in ("SelfSupervisedLoss", "VICRegLoss")


def make_inputs(batch_size, dim, num_classes, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch_size, dim, generator=generator).to(device)
    if num_classes is None:
        labels = torch.arange(batch_size // PER_CLASS).repeat_interleave(PER_CLASS)
    else:
        labels = torch.randint(num_classes, (batch_size,), generator=generator)
    return embeddings, labels.to(device)


def call_loss(name, loss_fn, embeddings, labels):
    if isinstance(getattr(loss_fn, "hist_", None), torch.Tensor):
        # PML's DynamicSoftMarginLoss keeps its histogram in the graph; a second backward fails.
        loss_fn.hist_ = loss_fn.hist_.detach()
    emb = embeddings.clone().requires_grad_(True)
    if is_two_view_loss(name):
        loss = loss_fn(emb, ref_emb=emb.detach().roll(1, dims=0) + 0.1)
    elif name == "ManifoldLoss":  # takes no labels: it assigns embeddings to proxies itself
        loss = loss_fn(emb)
    else:
        loss = loss_fn(emb, labels)
    loss.backward()


def call_miner(name, miner, embeddings, labels):
    miner(embeddings, labels)


def distance_matrix_lower_bound(name, _, embeddings, labels):
    emb = embeddings.clone().requires_grad_(True)
    normalized = torch.nn.functional.normalize(emb, dim=1)
    torch.cdist(normalized, normalized).sum().backward()


def measure(run, name, obj, embeddings, labels, device, repeats, max_seconds):
    """(median seconds, peak bytes), or an error string such as 'OOM'."""
    try:
        run(name, obj, embeddings, labels)  # warm-up: one-time kernel and buffer set-up
        with PeakMemory(device) as memory:
            one_call = seconds(lambda: run(name, obj, embeddings, labels), device)
        calls = max(1, int(SHORTEST_TIMED_SECONDS / max(one_call, 1e-7)))
        times = repeated_seconds(
            lambda: [run(name, obj, embeddings, labels) for _ in range(calls)],
            repeats,
            warmup=0,
            device=device,
            budget_s=max_seconds,
        )
        return statistics.median(times) / calls, memory.peak_bytes
    except (RuntimeError, MemoryError, ValueError, AssertionError) as error:
        return "OOM" if "memory" in str(error).lower() else f"error: {str(error)[:60]}"


def format_cell(result):
    if isinstance(result, str):
        return result, result
    seconds, peak = result
    return f"{seconds * 1e3:9.1f}", f"{peak / 2**20:8.1f}"


def ratio(ours, theirs, index):
    if isinstance(ours, str) or isinstance(theirs, str):
        return "-"
    return f"{ours[index] / max(theirs[index], 1e-12):6.2f}"


def cases(args):
    loss_classes = exported_classes(our_losses, torch.nn.Module)
    miner_classes = exported_classes(our_miners, our_miners.BaseMiner)
    selected = set(args.only) if args.only else None
    for name, cls in sorted(loss_classes.items()):
        if selected and name not in selected:
            continue
        counts = CLASS_COUNTS_FOR_CLASSIFIERS if needs_classes(cls) else (None,)
        for num_classes in counts:
            yield name, cls, num_classes, call_loss, pml_losses
    for name, cls in sorted(miner_classes.items()):
        if selected and name not in selected:
            continue
        yield name, cls, None, call_miner, pml_miners


def build(cls, our_cls, library_losses, num_classes, dim, device):
    """Both libraries get the arguments read off our class's signature (PML's classes often
    hide theirs behind *args/**kwargs)."""
    return cls(**constructor_kwargs(our_cls, dim, num_classes, library_losses)).to(device)


def main():
    args = parse_args()
    if torch.device(args.device).type == "cpu":  # CUDA reserves its address space up front
        limit = resource.getrlimit(resource.RLIMIT_AS)[1]
        budget = process_status_bytes("VmSize") + MEMORY_HEADROOM_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (budget, limit))
    use_pml = pml_losses is not None and not args.no_pml
    print(
        f"device={args.device} dim={args.dim} {PER_CLASS} samples/class, median of {args.repeats}"
    )
    print("PML:", "installed" if use_pml else "not installed (ours only)")
    table = Table("forward+backward time and peak memory", TABLE_HEADER)
    results = {}
    for batch_size in args.batch_sizes:
        header = f"{'batch ' + str(batch_size):<46}{'ours ms':>9} {'PML ms':>9} {'ratio':>6} "
        print("\n" + header + f"{'ours MB':>8} {'PML MB':>8} {'ratio':>6}")
        embeddings, labels = make_inputs(batch_size, args.dim, None, args.device)
        bound = measure(
            distance_matrix_lower_bound,
            "",
            None,
            embeddings,
            labels,
            args.device,
            args.repeats,
            args.max_seconds,
        )
        print(f"{LOWER_BOUND:<46}{format_cell(bound)[0]}")
        table.add(batch_size, LOWER_BOUND, format_cell(bound)[0].strip(), "", "", "", "", "")
        results[f"{batch_size} {LOWER_BOUND}"] = {"ours": bound}
        for name, cls, num_classes, run, pml_module in cases(args):
            embeddings, labels = make_inputs(batch_size, args.dim, num_classes, args.device)
            if name == "EmbeddingsAlreadyPackagedAsTriplets":  # consecutive (a, p, n) rows
                usable = batch_size - batch_size % 3  # cut here, not inside the timed call
                embeddings, labels = embeddings[:usable], labels[:usable]
            ours = measure(
                run,
                name,
                build(cls, cls, our_losses, num_classes, args.dim, args.device),
                embeddings,
                labels,
                args.device,
                args.repeats,
                args.max_seconds,
            )
            theirs = "n/a"
            pml_cls = getattr(pml_module, name, None) if use_pml else None
            if pml_cls is not None:
                pml_obj = build(pml_cls, cls, pml_losses, num_classes, args.dim, args.device)
                theirs = measure(
                    run,
                    name,
                    pml_obj,
                    embeddings,
                    labels,
                    args.device,
                    args.repeats,
                    args.max_seconds,
                )
            label = name if num_classes is None else f"{name} ({num_classes} classes)"
            o_time, o_mem = format_cell(ours)
            t_time, t_mem = format_cell(theirs)
            print(
                f"{label:<46}{o_time:>9} {t_time:>9} {ratio(ours, theirs, 0):>6} "
                f"{o_mem:>8} {t_mem:>8} {ratio(ours, theirs, 1):>6}",
                flush=True,
            )
            cells = (o_time, t_time, ratio(ours, theirs, 0), o_mem, t_mem, ratio(ours, theirs, 1))
            table.add(batch_size, label, *(cell.strip() for cell in cells))
            results[f"{batch_size} {label}"] = {"ours": ours, "pml": theirs}
    write_results(args.out, "bench_losses", [table], results, device=args.device)


if __name__ == "__main__":
    main()
