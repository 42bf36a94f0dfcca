"""CascadedEmbeddings: one loss (and optional miner/classifier) per embedding section; the
cascade hands each section's tuples to an HDC miner of the next; matches PML (float64)."""

import pytest
import torch

from metric_runner import losses, miners
from metric_runner.trainers import CascadedEmbeddings
from tests.trainers.helpers import assert_same_run, build, run_recorded, train


def parts(classifier=True, hdc=None):
    """`hdc`: the HDCMiner class for the cascade (PML's trainer recognises only PML's own), or
    None for independent triplet miners."""
    miner = (lambda: hdc(filter_percentage=0.5)) if hdc else miners.TripletMarginMiner
    loss_funcs = {
        "metric_loss_0": losses.TripletMarginLoss(margin=0.2),
        "metric_loss_1": losses.ContrastiveLoss(),
    }
    extra = {}
    if classifier:
        loss_funcs["classifier_loss_1"] = torch.nn.CrossEntropyLoss()
        extra = {"classifier_1": lambda: torch.nn.Linear(2, 4)}
    return dict(
        loss_funcs=loss_funcs,
        extra_models=extra,
        mining_funcs={"tuple_miner_0": miner(), "tuple_miner_1": miner()},
    )


@pytest.mark.parametrize("classifier, cascade", [(True, True), (False, False)])
def test_matches_pml_cascaded_embeddings(pml_trainers, classifier, cascade):
    pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
    theirs = run_recorded(
        lambda *a, **k: pml_trainers.CascadedEmbeddings([2, 2], *a, **k),
        **parts(classifier, pml_miners.HDCMiner if cascade else None),
    )
    ours = run_recorded(
        lambda *a, **k: CascadedEmbeddings([2, 2], *a, **k),
        **parts(classifier, miners.HDCMiner if cascade else None),
    )
    assert_same_run(ours, theirs)


def test_each_section_gets_its_loss_and_the_cascade_narrows_the_tuples():
    seen = {}

    class Loss(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, embeddings, labels, indices_tuple):
            seen[self.name] = (embeddings.detach().clone(), indices_tuple)
            return embeddings.pow(2).mean()

    trainer = build(
        lambda *a, **k: CascadedEmbeddings([1, 3], *a, **k),
        loss_funcs={"metric_loss_0": Loss("a"), "metric_loss_1": Loss("b")},
        mining_funcs={"tuple_miner_0": miners.HDCMiner(0.5), "tuple_miner_1": miners.HDCMiner(0.5)},
        iterations_per_epoch=1,
    )
    embeddings = []
    trainer.models["embedder"].register_forward_hook(lambda m, i, o: embeddings.append(o.detach()))
    train(trainer, num_epochs=1)
    assert torch.equal(seen["a"][0], embeddings[0][:, :1])
    assert torch.equal(seen["b"][0], embeddings[0][:, 1:])
    first, second = seen["a"][1], seen["b"][1]
    first_pairs = set(zip(first[0].tolist(), first[1].tolist())) | set(
        zip(first[2].tolist(), first[3].tolist())
    )
    second_pairs = set(zip(second[0].tolist(), second[1].tolist())) | set(
        zip(second[2].tolist(), second[3].tolist())
    )
    assert second_pairs and second_pairs <= first_pairs
    assert len(second_pairs) < len(first_pairs)
