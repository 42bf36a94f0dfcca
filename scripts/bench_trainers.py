"""Step time of each metric_runner trainer vs PML's same trainer on the same batches.

    python scripts/bench_trainers.py                       # default sizes
    python scripts/bench_trainers.py --iterations 5 --repeats 1 --batch-size 32   # smoke run
    python scripts/bench_trainers.py --out results/trainers   # + trainers.json and .md

Each trainer gets identical seeded models, losses and data; both train the same number of
iterations from the same RNG state (so the same batches), alternating which goes first. Prints
the median seconds per iteration and ours/PML (target <= 1.05). Needs pytorch-metric-learning.
"""

import argparse
import copy
import statistics
import warnings

import torch
from bench_harness import Table, add_out_argument, alternating_seconds, write_results

import metric_runner.losses as our_losses
import metric_runner.miners as our_miners
import metric_runner.trainers as our_trainers
import metric_runner.utils.common_functions as our_c_f


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--input-dim", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--embedding-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_out_argument(parser)
    return parser.parse_args()


def dataset(args, two_stream=False):
    generator = torch.Generator().manual_seed(0)
    n = args.batch_size * 8
    labels = torch.arange(n) % args.classes
    centers = torch.randn(args.classes, args.input_dim, generator=generator)
    x = centers[labels] + torch.randn(n, args.input_dim, generator=generator)
    if two_stream:
        other = x + 0.3 * torch.randn(x.shape, generator=generator)
        return torch.utils.data.TensorDataset(x, other, labels)
    return torch.utils.data.TensorDataset(x, labels)


def base_models(args):
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(
        torch.nn.Linear(args.input_dim, args.hidden),
        torch.nn.BatchNorm1d(args.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, args.hidden),
    )
    embedder = torch.nn.Linear(args.hidden, args.embedding_size)
    return {"trunk": trunk, "embedder": embedder}


def setups(args, losses, miners):
    """name -> (trainer class name, extra kwargs, models, loss_funcs, mining_funcs, dataset)."""
    models = base_models(args)
    e, h = args.embedding_size, args.hidden
    classifier = torch.nn.Linear(e, args.classes)
    generator = torch.nn.Linear(3 * h, h)
    return {
        "MetricLossOnly": (
            "MetricLossOnly",
            {},
            models,
            {"metric_loss": losses.TripletMarginLoss(margin=0.1)},
            {"tuple_miner": miners.MultiSimilarityMiner(epsilon=0.1)},
            dataset(args),
        ),
        "TrainWithClassifier": (
            "TrainWithClassifier",
            {},
            {**models, "classifier": classifier},
            {
                "metric_loss": losses.ContrastiveLoss(),
                "classifier_loss": torch.nn.CrossEntropyLoss(),
            },
            {},
            dataset(args),
        ),
        "CascadedEmbeddings": (
            "CascadedEmbeddings",
            {"embedding_sizes": [e // 2, e - e // 2]},
            models,
            {
                "metric_loss_0": losses.TripletMarginLoss(margin=0.1),
                "metric_loss_1": losses.TripletMarginLoss(margin=0.1),
            },
            {"tuple_miner_0": miners.TripletMarginMiner(margin=0.2)},
            dataset(args),
        ),
        "DeepAdversarialMetricLearning": (
            "DeepAdversarialMetricLearning",
            {"g_triplets_per_anchor": 4},
            {**models, "generator": generator},
            {
                "metric_loss": losses.TripletMarginLoss(margin=0.1),
                "g_adv_loss": losses.TripletMarginLoss(margin=0.1),
                "synth_loss": losses.TripletMarginLoss(margin=0.1),
            },
            {},
            dataset(args),
        ),
        "TwoStreamMetricLoss": (
            "TwoStreamMetricLoss",
            {},
            models,
            {"metric_loss": losses.TripletMarginLoss(margin=0.1)},
            {"tuple_miner": miners.TripletMarginMiner(margin=0.2)},
            dataset(args, two_stream=True),
        ),
    }


def build(trainers, setup, args):
    class_name, extra, models, loss_funcs, mining_funcs, data = copy.deepcopy(setup)
    models = {name: model.to(args.device) for name, model in models.items()}
    optimizers = {
        f"{name}_optimizer": torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for name, model in models.items()
    }
    return getattr(trainers, class_name)(
        models=models,
        optimizers=optimizers,
        batch_size=args.batch_size,
        loss_funcs=loss_funcs,
        mining_funcs=mining_funcs,
        dataset=data,
        iterations_per_epoch=args.iterations,
        data_device=args.device,
        dataloader_num_workers=0,
        **extra,
    )


def seconds_per_iteration(name, libraries, args):
    """ours and PML's seconds per iteration of trainer `name`, each run on a freshly built
    trainer from the same RNG state (so the same batches), alternating which goes first."""
    trainers = {}

    def build_trainer(library, _round):
        trainer_module, all_setups = libraries[library]
        trainers[library] = build(trainer_module, all_setups[name], args)
        torch.manual_seed(0)

    times = alternating_seconds(
        {
            library: lambda library=library: trainers[library].train(num_epochs=1)
            for library in libraries
        },
        repeats=args.repeats,
        warmup=0,
        device=args.device,
        before_each=build_trainer,
    )
    return {library: [t / args.iterations for t in runs] for library, runs in times.items()}


def main():
    args = parse_args()
    import pytorch_metric_learning.losses as pml_losses
    import pytorch_metric_learning.miners as pml_miners
    import pytorch_metric_learning.trainers as pml_trainers
    import pytorch_metric_learning.utils.common_functions as pml_c_f

    # both libraries warn about optional dict keys and PML about its progress-bar .item(): keep
    # the table readable
    pml_c_f.LOGGER.setLevel("ERROR")
    our_c_f.LOGGER.setLevel("ERROR")
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    ours_setups = setups(args, our_losses, our_miners)
    pml_setups = setups(args, pml_losses, pml_miners)
    print(f"device={args.device} batch={args.batch_size} iterations={args.iterations}")
    print(f"{'trainer':32s} {'ours s/it':>10s} {'PML s/it':>10s} {'ours/PML':>9s}")
    libraries = {"ours": (our_trainers, ours_setups), "pml": (pml_trainers, pml_setups)}
    table = Table(
        "seconds per iteration (median)", ["trainer", "ours s/it", "PML s/it", "ours/PML"]
    )
    results = {}
    for name in ours_setups:
        results[name] = seconds_per_iteration(name, libraries, args)
        ours_median, pml_median = (statistics.median(results[name][k]) for k in ("ours", "pml"))
        ratio = ours_median / pml_median
        print(f"{name:32s} {ours_median:10.5f} {pml_median:10.5f} {ratio:9.3f}")
        table.add(name, f"{ours_median:.5f}", f"{pml_median:.5f}", f"{ratio:.3f}")
    write_results(args.out, "bench_trainers", [table], results, device=args.device)


if __name__ == "__main__":
    main()
