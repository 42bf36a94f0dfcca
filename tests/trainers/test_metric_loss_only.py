"""MetricLossOnly: it learns, and it matches PML's MetricLossOnly step for step (float64)."""

import pytest
import torch

from metric_runner import miners
from metric_runner.trainers import MetricLossOnly
from tests.trainers.helpers import Recorder, assert_states_equal, blobs, build, state_of, train


def schedulers(optimizers):
    return {
        "trunk_scheduler_by_iteration": torch.optim.lr_scheduler.StepLR(
            optimizers["trunk_optimizer"], step_size=3, gamma=0.5
        ),
        "embedder_scheduler_by_epoch": torch.optim.lr_scheduler.StepLR(
            optimizers["embedder_optimizer"], step_size=1, gamma=0.5
        ),
    }


def clippers(models):
    return {
        "trunk_grad_clipper": lambda: torch.nn.utils.clip_grad_norm_(
            models["trunk"].parameters(), 0.5
        )
    }


def test_loss_decreases():
    recorder = Recorder()
    trainer = build(
        MetricLossOnly, miner=False, end_of_iteration_hook=recorder.end_of_iteration_hook
    )
    train(trainer, num_epochs=6)
    per_epoch = torch.tensor(recorder.losses()).view(6, -1).mean(dim=1)
    assert per_epoch[-1] < 0.5 * per_epoch[0]


PARITY_SETUPS = {
    "schedulers_clippers_miner": dict(schedulers=schedulers, clippers=clippers),
    "subset_miner_frozen_bn_weights": dict(
        mining_funcs_extra=True, freeze_trunk_batchnorm=True, loss_weights={"metric_loss": 0.7}
    ),
    "no_embedder_iterations_per_epoch": dict(embedder=False, iterations_per_epoch=3),
    "frozen_embedder_labels_mapped": dict(
        freeze_these=("embedder",), set_min_label_to_zero=True, label_offset=10
    ),
}


def run(trainer_class, setup):
    setup = dict(setup)
    recorder = Recorder()
    offset = setup.pop("label_offset", 0)
    dataset = blobs()
    if offset:
        x, labels = dataset.tensors
        dataset = torch.utils.data.TensorDataset(x, labels + offset)
        setup["dataset_labels"] = (labels + offset).numpy()
    trainer = build(
        trainer_class,
        dataset=dataset,
        end_of_iteration_hook=recorder.end_of_iteration_hook,
        end_of_epoch_hook=recorder.end_of_epoch_hook,
        **{k: v for k, v in setup.items() if k != "mining_funcs_extra"},
    )
    if setup.get("mining_funcs_extra"):
        trainer.mining_funcs["subset_batch_miner"] = lambda emb, labels: (
            torch.arange(0, len(labels), 2) + (emb[0, 0] > 0).long()
        )
    train(trainer, num_epochs=3)
    return recorder, trainer


@pytest.mark.parametrize("setup", PARITY_SETUPS.values(), ids=PARITY_SETUPS.keys())
def test_matches_pml_metric_loss_only(pml_trainers, setup):
    expected_recorder, expected = run(pml_trainers.MetricLossOnly, setup)
    recorder, trainer = run(MetricLossOnly, setup)
    assert len(recorder.iterations) == len(expected_recorder.iterations) > 0
    for ours, theirs in zip(recorder.iterations, expected_recorder.iterations):
        assert (ours["epoch"], ours["iteration"], ours["global"], ours["shared"]) == (
            theirs["epoch"],
            theirs["iteration"],
            theirs["global"],
            theirs["shared"],
        )
        assert ours["losses"] == pytest.approx(theirs["losses"], rel=1e-12, abs=1e-12)
    assert_states_equal(state_of(trainer.models), state_of(expected.models), rtol=1e-10, atol=1e-12)
    assert trainer.iterations_per_epoch == expected.iterations_per_epoch
    assert trainer.loss_weights == expected.loss_weights
    assert trainer.loss_tracker.loss_weights == expected.loss_tracker.loss_weights


def test_same_attributes_as_pml_for_hooks(pml_trainers):
    theirs = vars(train(build(pml_trainers.MetricLossOnly), num_epochs=1))
    ours = vars(train(build(MetricLossOnly), num_epochs=1))
    assert set(theirs) <= set(ours)


def test_tuple_miner_output_reaches_the_loss():
    """A miner that returns no triplets leaves the triplet loss at exactly 0."""
    empty = torch.empty(0, dtype=torch.long)

    class NoTriplets(miners.BaseMiner):
        def mine(self, embeddings, labels, ref_emb, ref_labels):
            return empty, empty, empty

    recorder = Recorder()
    trainer = build(
        MetricLossOnly, miner=False, end_of_iteration_hook=recorder.end_of_iteration_hook
    )
    trainer.mining_funcs["tuple_miner"] = NoTriplets()
    train(trainer, num_epochs=1)
    assert recorder.losses() == [0.0] * len(recorder.iterations)


def test_zero_weight_means_no_loss_and_a_clear_error():
    trainer = build(MetricLossOnly, loss_weights={"metric_loss": 0})
    with pytest.raises(ValueError, match="no loss was computed at epoch 1, iteration 0"):
        train(trainer)


class SquaredNormTerm:
    """An auxiliary term with a known value: the mean squared norm of the embeddings. It
    records what it was given, so the test can recompute it."""

    def __init__(self):
        self.seen = []

    def __call__(self, trainer, data, embeddings):
        self.seen.append((trainer, data, embeddings.detach().clone()))
        return embeddings.pow(2).sum(dim=1).mean()


def test_extra_loss_terms_are_weighted_into_the_total():
    term = SquaredNormTerm()
    recorder = Recorder()
    trainer = build(
        MetricLossOnly,
        miner=False,
        extra_loss_terms={"norm": term},
        loss_weights={"metric_loss": 1, "norm": 0.25},
        end_of_iteration_hook=recorder.end_of_iteration_hook,
    )
    train(trainer, num_epochs=1)
    assert len(term.seen) == len(recorder.iterations) > 0
    for (seen_trainer, data, embeddings), step in zip(term.seen, recorder.iterations):
        assert seen_trainer is trainer and data.shape == (16, 8)
        # As in PML, the tracker leaves each loss multiplied by its weight.
        weighted_norm = 0.25 * float(embeddings.pow(2).sum(dim=1).mean())
        assert step["losses"]["norm"] == pytest.approx(weighted_norm, rel=1e-12)
        expected_total = step["losses"]["metric_loss"] + weighted_norm
        assert step["losses"]["total_loss"] == pytest.approx(expected_total, rel=1e-12)


def test_extra_loss_terms_alone_train_without_a_metric_loss():
    """A self-supervised-only run: no metric loss, labels never read by a loss."""
    recorder = Recorder()
    trainer = build(
        MetricLossOnly,
        miner=False,
        loss_funcs={},
        extra_loss_terms={"norm": SquaredNormTerm()},
        end_of_iteration_hook=recorder.end_of_iteration_hook,
    )
    train(trainer, num_epochs=3)
    norms = recorder.losses("norm")
    assert recorder.losses() == norms and norms[-1] < 0.5 * norms[0]
    assert all(set(step["losses"]) == {"norm", "total_loss"} for step in recorder.iterations)
