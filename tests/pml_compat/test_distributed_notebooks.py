"""PML's DistributedTripletMarginLossMNIST and MoCoCIFAR10 notebooks run to the end on
metric_runner, with only their data replaced (small class-structured stand-ins), on CPU; the
distributed one in 2 processes over gloo on a free port.

The distributed notebook starts its processes with torch.multiprocessing.Process (forked), so
what they print is written to a file by a `print` that the children inherit, and
their exit codes tell whether they finished.
"""

import csv
import logging
import math
import multiprocessing
import re
import socket

import pytest

from tests.pml_compat.notebooks import StandInCIFAR10, StandInMNIST, run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_threaded_faiss")]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def print_to(path):
    """A print that appends each line to `path` (forked processes inherit it)."""

    def file_print(*args, sep=" ", end="\n", **_):
        with open(path, "a") as f:
            f.write(sep.join(str(a) for a in args) + end)

    return file_print


@pytest.fixture
def restore_root_logger_level():
    """Both notebooks set the root logger to INFO; keep that out of the other tests."""
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def run_distributed_notebook(tmp_path):
    """What the notebook's 2 processes printed; asserts they both finished."""
    printed = tmp_path / "printed.txt"
    run = run_notebook(
        "DistributedTripletMarginLossMNIST",
        cwd=tmp_path,
        # 1024 images: 512 per process, so 2 efficient-wrapper steps of 256 on each rank.
        datasets={"MNIST": StandInMNIST.sized(train=1024, test=128)},
        assignments={"size": 2},
        constants={"29500": str(free_port())},
        patches={
            "builtins.print": print_to(printed),
            # fork, so the children find the notebook's functions (Python 3.14 defaults to
            # forkserver, which would have to import them from a module).
            "torch.multiprocessing.Process": multiprocessing.get_context("fork").Process,
        },
    )
    assert [p.exitcode for p in run.namespace["processes"]] == [0, 0]
    return printed.read_text()


def first_steps(text):
    """{rank: (loss, pos pairs, neg pairs)} of each rank's first step."""
    steps = re.findall(
        r"Rank (\d), iteration 0, loss ([0-9.e-]+), num pos pairs (\d+), num neg pairs (\d+)", text
    )
    return {int(r): (float(loss), int(pos), int(neg)) for r, loss, pos, neg in steps}


def average_losses(text):
    found = re.findall(r"Rank (\d), epoch 0, average loss ([0-9.e-]+)", text)
    return {int(rank): float(loss) for rank, loss in found}


@pytest.mark.usefixtures("restore_root_logger_level")
def test_distributed_triplet_margin_loss_mnist_runs_to_the_end(tmp_path):
    text = run_distributed_notebook(tmp_path)
    steps, averages = first_steps(text), average_losses(text)
    assert sorted(steps) == sorted(averages) == [0, 1]
    for rank, (loss, pos_pairs, neg_pairs) in steps.items():
        # The efficient miner pairs 256 local anchors with 512 gathered samples, 10 classes.
        assert 0 < loss < 1 and pos_pairs > 0 and neg_pairs > 0
        assert averages[rank] < loss  # the second step's loss is below the first's
    precisions = [float(x) for x in re.findall(r"\(Precision@1\) = ([0-9.]+)", text)]
    assert len(precisions) == 2  # untrained, then after the epoch: rank 0 only
    assert precisions[-1] > 0.5  # 10 separable classes; chance is 0.1


@pytest.mark.usefixtures("restore_root_logger_level")
def test_moco_cifar10_runs_to_the_end(tmp_path):
    run = run_notebook(
        "MoCoCIFAR10",
        cwd=tmp_path,
        datasets={"CIFAR10": StandInCIFAR10.sized(train=80, test=40)},
        assignments={"batch_size": 16, "num_epochs": 1, "memory_size": 64, "knn_k": 5},
        # The notebook moves tensors with .cuda(); on CPU they stay where they are.
        patches={"torch.Tensor.cuda": lambda self, *args, **kwargs: self},
    )
    loss_fn = run.namespace["loss_fn"]
    # 5 steps of 16 keys (the enqueued half of each batch of 16 pairs) in a 64-slot memory.
    assert loss_fn.queue_idx == 80 % 64 and loss_fn.has_been_filled
    # Each step's labels continue after the largest label in the memory: 5 x 16 distinct ones.
    assert int(loss_fn.label_memory.max()) == 5 * 16
    assert 0 <= run.namespace["best_accuracy"] <= 100
    assert run.namespace["global_iteration"]["iter"] == 5
    losses = read_csv_column(tmp_path / "example_logs", "loss_histories", "loss")
    # NTXent with 1 positive among 16 + up to 64 keys: about log(80) at the start.
    assert len(losses) == 5 and all(math.isfinite(x) and 0 < x < 2 * math.log(80) for x in losses)


def read_csv_column(folder, file_stem, column):
    (path,) = [p for p in folder.rglob("*.csv") if p.stem.startswith(file_stem)]
    with open(path) as f:
        return [float(row[column]) for row in csv.DictReader(f)]
