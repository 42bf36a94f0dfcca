"""PML's example notebooks that need no trainer, logging preset or distributed wrapper run to the
end on metric_runner, with only their data (and the Inference notebook's cloned model) replaced.

The stand-in images are class-structured, so the notebooks' own accuracy printouts are checked
against what a working pipeline reaches, and the Inference notebook's answers are compared with the
same notebook run on PML."""

import re
import types

import numpy as np
import pytest
import torch

from tests.pml_compat.notebooks import StandInCIFAR10, StandInMNIST, run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_threaded_faiss")]

SMALL_MNIST = StandInMNIST.sized(train=256, test=64)


def printed_precisions(output):
    return [float(x) for x in re.findall(r"Precision@1\) = ([0-9.]+)", output)]


def test_triplet_margin_loss_mnist_runs_to_the_end(tmp_path):
    run = run_notebook(
        "TripletMarginLossMNIST",
        cwd=tmp_path,
        datasets={"MNIST": SMALL_MNIST},
        assignments={"num_epochs": 1},
    )
    mined = re.findall(r"Number of mined triplets = (\d+)", run.output)
    assert mined and int(mined[0]) > 0
    assert run.namespace["mining_func"].num_triplets >= 0
    # 10 well-separated classes: chance is 0.1, a working loss/miner/tester pipeline is near 1.
    assert printed_precisions(run.output)[-1] > 0.5


def test_sub_center_arc_face_mnist_runs_to_the_end(tmp_path):
    run = run_notebook(
        "SubCenterArcFaceMNIST",
        cwd=tmp_path,
        datasets={"MNIST": SMALL_MNIST},
        assignments={"num_epochs": 1},
    )
    assert printed_precisions(run.output)[-1] > 0.5
    outliers = run.namespace["outliers"]
    assert f"There are {len(outliers)} outliers" in run.output
    # The same trained sub-centers and embeddings give PML's outliers.
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    trained = run.namespace["loss_func"]
    theirs = pml_losses.SubCenterArcFaceLoss(num_classes=10, embedding_size=128)
    theirs.load_state_dict(trained.state_dict())
    embeddings, labels = run.namespace["train_embeddings"], run.namespace["train_labels"]
    expected, expected_centers = theirs.get_outliers(embeddings, labels.squeeze(1))
    assert sorted(outliers.tolist()) == sorted(expected.tolist())
    _, dominant_centers = trained.get_outliers(embeddings, labels.squeeze(1))
    torch.testing.assert_close(dominant_centers, expected_centers)


class SmallCifarNet(torch.nn.Module):
    """Stands in for akamaster/pytorch_resnet_cifar10's resnet20 (the notebook clones that
    repository and loads its pretrained checkpoint; neither is reachable in tests). Like resnet20
    it ends in a `linear` classifier that the notebook swaps for nn.Identity."""

    def __init__(self):
        super().__init__()
        # A random projection of the pixels keeps the images' cosine similarities: same-class
        # images (one pattern plus noise) stay close, other classes far, as with a trained model.
        self.features = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 128))
        self.linear = torch.nn.Linear(128, 10)

    def forward(self, x):
        return self.linear(self.features(x))


def cloned_resnet_repository(directory):
    """The `pytorch_resnet_cifar10` package and the checkpoint file the notebook loads."""
    torch.manual_seed(0)
    model = torch.nn.DataParallel(SmallCifarNet())
    checkpoint = directory / "pytorch_resnet_cifar10" / "pretrained_models" / "resnet20-12fca82f.th"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    package = types.ModuleType("pytorch_resnet_cifar10")
    package.resnet = types.SimpleNamespace(resnet20=SmallCifarNet)
    return {"pytorch_resnet_cifar10": package}


def run_inference_notebook(directory, library):
    directory.mkdir()
    return run_notebook(
        "Inference",
        cwd=directory,
        datasets={"CIFAR10": StandInCIFAR10.sized(train=10, test=400)},
        modules=cloned_resnet_repository(directory),
        library=library,
    )


def test_inference_runs_to_the_end_and_answers_as_pml(tmp_path, pml):
    ours_run = run_inference_notebook(tmp_path / "ours", "metric_runner")
    theirs = run_inference_notebook(tmp_path / "pml", "pytorch_metric_learning").namespace
    ours = ours_run.namespace
    # 20 same-class pairs all match at threshold 0.7; a car and a frog do not.
    assert "accuracy = 1.0" in ours_run.output
    assert not ours["inference_model"].is_match(
        ours["dataset"][ours["classA"][0]][0][None], ours["dataset"][ours["classB"][0]][0][None]
    )[0]
    assert ours["labels_to_indices"].keys() == theirs["labels_to_indices"].keys()
    for label, indices in theirs["labels_to_indices"].items():
        np.testing.assert_array_equal(ours["labels_to_indices"][label], indices)
    np.testing.assert_array_equal(np.asarray(ours["decision"]), np.asarray(theirs["decision"]))
    np.testing.assert_array_equal(ours["match_matrix"], theirs["match_matrix"])
    assert sorted(map(tuple, ours["match_tuples"])) == sorted(map(tuple, theirs["match_tuples"]))
    torch.testing.assert_close(ours["distances"], theirs["distances"], rtol=1e-5, atol=1e-5)
    # the last query's 10 neighbours; ties between equal distances may order differently
    assert set(ours["indices"].flatten().tolist()) == set(theirs["indices"].flatten().tolist())
