"""DeepAdversarialMetricLearning: phases (metric alone, generator alone, both) decide the
active losses, the networks with gradients and the optimizers that step; the generator's
losses follow the paper; matches PML's trainer step for step."""

import pytest
import torch

from metric_runner import losses
from metric_runner.trainers import DeepAdversarialMetricLearning
from metric_runner.trainers.deep_adversarial_metric_learning import triplet_members
from metric_runner.utils import loss_and_miner_utils as lmu
from tests.trainers.helpers import TRUNK_OUT, assert_same_run, build, run_recorded, train


def deterministic_triplets_dataset(dtype=torch.float32):
    """Sequential batches of 3 with labels (c, c, d): with one triplet per anchor, the
    generator's random triplets are forced to (0, 1, 2) and (1, 0, 2), whatever the RNG (PML
    draws them with numpy, we with torch)."""
    generator = torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 0, 1, 2, 2, 3, 1, 1, 0, 3, 3, 2])
    x = 2 * labels.unsqueeze(1).to(torch.float64) + torch.randn(
        12, 8, generator=generator, dtype=torch.float64
    )
    return torch.utils.data.TensorDataset(x.to(dtype), labels)


def setup(loss_module, dtype=torch.float32, **overrides):
    dataset = deterministic_triplets_dataset(dtype)
    arguments = dict(
        dataset=dataset,
        batch_size=3,
        sampler=torch.utils.data.SequentialSampler(dataset),
        batchnorm=False,
        miner=False,
        extra_models={"generator": lambda: torch.nn.Linear(3 * TRUNK_OUT, TRUNK_OUT)},
        loss_funcs={
            "metric_loss": loss_module.TripletMarginLoss(margin=0.2),
            "g_adv_loss": loss_module.TripletMarginLoss(margin=0.3),
            "synth_loss": loss_module.TripletMarginLoss(margin=0.2),
        },
        loss_weights={
            "metric_loss": 1.0,
            "g_adv_loss": 0.5,
            "synth_loss": 0.7,
            "g_hard_loss": 0.3,
            "g_reg_loss": 2.0,
        },
        iterations_per_epoch=2,
        model_dtype=dtype,
    )
    arguments.update(overrides)
    return arguments


def daml(trainer_class, **kwargs):
    return lambda *a, **k: trainer_class(
        *a, metric_alone_epochs=1, g_alone_epochs=1, g_triplets_per_anchor=1, **k, **kwargs
    )


def test_matches_pml_deep_adversarial_metric_learning(pml_trainers):
    """float32: PML's trainer builds the synthetic batch in float32 whatever the dtype."""
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    theirs = run_recorded(
        daml(pml_trainers.DeepAdversarialMetricLearning), num_epochs=4, **setup(pml_losses)
    )
    ours = run_recorded(daml(DeepAdversarialMetricLearning), num_epochs=4, **setup(losses))
    assert_same_run(ours, theirs, rtol=1e-5, atol=1e-6)
    assert ours[1].loss_weights == theirs[1].loss_weights


def phase_log(dtype=torch.float64):
    """Per iteration: (epoch, stepped optimizers, modules with gradients, nonzero losses)."""
    log = []
    trainer = build(daml(DeepAdversarialMetricLearning), **setup(losses, dtype=dtype))
    stepped = []
    for name, optimizer in trainer.optimizers.items():
        optimizer.register_step_post_hook(lambda opt, args, kwargs, name=name: stepped.append(name))

    def hook(t):
        with_grad = sorted(
            n for n, m in t.models.items() if any(p.requires_grad for p in m.parameters())
        )
        nonzero = sorted(n for n, v in t.losses.items() if torch.is_tensor(v) and v.item() != 0)
        log.append((t.epoch, sorted(stepped), with_grad, nonzero))
        stepped.clear()

    trainer.end_of_iteration_hook = hook
    train(trainer, num_epochs=3)
    return log, trainer


def test_phases_choose_losses_gradients_and_optimizers():
    log, _ = phase_log()
    metric = (
        ["embedder_optimizer", "trunk_optimizer"],
        ["embedder", "trunk"],
        ["metric_loss", "total_loss"],
    )
    generator = (
        ["generator_optimizer"],
        ["embedder", "generator"],
        ["g_adv_loss", "g_hard_loss", "g_reg_loss", "total_loss"],
    )
    both_optimizers = ["embedder_optimizer", "generator_optimizer", "trunk_optimizer"]
    assert [entry[1:] for entry in log[:2]] == [metric] * 2
    assert [entry[1:] for entry in log[2:4]] == [generator] * 2
    for epoch, stepped, with_grad, nonzero in log[4:]:
        assert epoch == 3 and stepped == both_optimizers
        assert with_grad == ["embedder", "generator", "trunk"]
        assert {"g_hard_loss", "g_reg_loss", "total_loss"} <= set(nonzero)


def test_generator_losses_follow_the_paper():
    """g_hard = mean((ñ/|ñ| - a/|a|)^2), g_reg = the same with the real negative, on trunk
    outputs; the adversarial loss is [d(a, ñ) - d(a, p) - m]_+ on the final embeddings."""
    trainer = build(daml(DeepAdversarialMetricLearning), **setup(losses, dtype=torch.float64))
    trainer.epoch = 3  # both phases
    trainer.update_loss_weights()
    x, labels = deterministic_triplets_dataset(torch.float64).tensors
    trainer.calculate_loss((x[:3], labels[:3]))
    trunk_out = trainer.models["trunk"](x[:3])
    rows = trunk_out[[0, 1, 2]], trunk_out[[1, 0, 2]], trunk_out[[2, 2, 2]]
    anchors, positives, negatives = rows[0][:2], rows[1][:2], rows[2][:2]
    synthetic = trainer.models["generator"](torch.cat([anchors, positives, negatives], dim=1))
    unit = torch.nn.functional.normalize
    expected_hard = (unit(synthetic) - unit(anchors)).pow(2).mean()
    expected_reg = (unit(synthetic) - unit(negatives)).pow(2).mean()
    # calculate_loss stores unweighted losses; the loss tracker weights them afterwards
    torch.testing.assert_close(trainer.losses["g_hard_loss"], expected_hard)
    torch.testing.assert_close(trainer.losses["g_reg_loss"], expected_reg)
    a, p, s = (unit(trainer.models["embedder"](v)) for v in (anchors, positives, synthetic))
    adversarial = torch.relu((a - s).norm(dim=1) - (a - p).norm(dim=1) - 0.3)
    nonzero = adversarial[adversarial > 0]
    expected_adv = nonzero.mean() if len(nonzero) else adversarial.sum()
    torch.testing.assert_close(trainer.losses["g_adv_loss"], expected_adv)


def triplet_members_gradient(embeddings, triplets, weights):
    embeddings = embeddings.clone().requires_grad_()
    members = triplet_members(embeddings, *triplets)
    sum(m.mul(w).sum() for m, w in zip(members, weights)).backward()
    return members, embeddings.grad


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_triplet_members_gather_rows_and_sum_their_gradients_in_a_fixed_order(two_threads):
    """Rows repeat across the random triplets: their gradients are summed in index order, so
    two runs give bit-identical gradients with 2 threads (advanced indexing's backward did not,
    which made a DAML run from one seed drift)."""
    torch.manual_seed(0)
    embeddings, labels = torch.randn(64, 256), torch.randint(0, 5, (64,))
    triplets = lmu.get_random_triplet_indices(labels, t_per_anchor=20)
    weights = torch.randn(3, len(triplets[0]), 256)
    members, grad = triplet_members_gradient(embeddings, triplets, weights)
    for _ in range(3):  # advanced indexing differed in ~9 of 10 such comparisons
        assert torch.equal(triplet_members_gradient(embeddings, triplets, weights)[1], grad)
    for member, indices in zip(members, triplets):
        assert torch.equal(member, embeddings[indices])
    expected = torch.zeros(64, 256, dtype=torch.float64)
    for indices, w in zip(triplets, weights):
        expected.index_put_((indices,), w.double(), accumulate=True)
    torch.testing.assert_close(grad.double(), expected, rtol=0, atol=1e-5)


def test_g_adv_loss_must_be_a_triplet_margin_loss():
    arguments = setup(losses, dtype=torch.float64)
    arguments["loss_funcs"]["g_adv_loss"] = losses.ContrastiveLoss()
    with pytest.raises(AssertionError, match="g_adv_loss must be a TripletMarginLoss"):
        build(daml(DeepAdversarialMetricLearning), **arguments)


def test_generator_is_required():
    arguments = setup(losses, dtype=torch.float64)
    arguments["extra_models"] = {}
    with pytest.raises(AssertionError, match='models must contain "generator"'):
        build(daml(DeepAdversarialMetricLearning), **arguments)
