"""BaseTrainer's loop, through MetricLossOnly: hooks, stopping, schedulers, clippers, freezing,
key checks, labels, and our additions (finite-loss check, accumulation, mixed precision)."""

import logging

import pytest
import torch

from metric_runner import losses
from metric_runner.trainers import BaseTrainer, MetricLossOnly, NonFiniteLossError
from tests.trainers.helpers import (
    Recorder,
    assert_states_equal,
    blobs,
    build,
    state_of,
    train,
)

ITERATIONS_PER_EPOCH = 64 // 16


class RecordingLoss(torch.nn.Module):
    """Mean squared norm of the embeddings (a per-sample loss); records what it was given."""

    def __init__(self, bad_call=None):
        super().__init__()
        self.calls, self.bad_call = [], bad_call

    def forward(self, embeddings, labels, indices_tuple=None):
        self.calls.append(
            {"labels": labels.clone(), "dtype": embeddings.dtype, "grad": embeddings.requires_grad}
        )
        loss = embeddings.pow(2).sum(dim=1).mean()
        return loss * float("nan") if len(self.calls) == self.bad_call else loss


def test_hooks_see_pml_attributes_in_order():
    recorder = Recorder()
    trainer = build(
        MetricLossOnly,
        end_of_iteration_hook=recorder.end_of_iteration_hook,
        end_of_epoch_hook=recorder.end_of_epoch_hook,
    )
    train(trainer, start_epoch=3, num_epochs=4)
    steps = [(it["epoch"], it["iteration"], it["global"]) for it in recorder.iterations]
    assert steps == [(3, i, 8 + i) for i in range(4)] + [(4, i, 12 + i) for i in range(4)]
    assert all(it["shared"] for it in recorder.iterations)
    first = recorder.iterations[0]["losses"]
    assert first["total_loss"] == first["metric_loss"] > 0
    # the epoch hook runs after the losses were reset, as in PML
    assert recorder.epochs == [
        (3, {"metric_loss": 0, "total_loss": 0}),
        (4, {"metric_loss": 0, "total_loss": 0}),
    ]
    assert trainer.epoch == 4 and trainer.iteration == 3


@pytest.mark.parametrize("stop_at", [1, 2])
def test_epoch_hook_returning_false_stops_at_that_epoch(stop_at):
    recorder = Recorder(stop_at_epoch=stop_at)
    trainer = build(
        MetricLossOnly,
        end_of_iteration_hook=recorder.end_of_iteration_hook,
        end_of_epoch_hook=recorder.end_of_epoch_hook,
    )
    train(trainer, num_epochs=5)
    assert [epoch for epoch, _ in recorder.epochs] == list(range(1, stop_at + 1))
    assert len(recorder.iterations) == stop_at * ITERATIONS_PER_EPOCH


def test_epoch_hook_returning_none_or_zero_does_not_stop():
    seen = []
    trainer = build(MetricLossOnly, end_of_epoch_hook=lambda t: seen.append(t.epoch) or 0)
    train(trainer, num_epochs=3)
    assert seen == [1, 2, 3]


def test_schedulers_step_per_iteration_per_epoch_and_on_plateau():
    lrs = []

    def schedulers(optimizers):
        trunk, embedder = optimizers["trunk_optimizer"], optimizers["embedder_optimizer"]
        return {
            "trunk_scheduler_by_iteration": torch.optim.lr_scheduler.LambdaLR(
                trunk, lambda step: 1 / (1 + step)
            ),
            "embedder_scheduler_by_epoch": torch.optim.lr_scheduler.LambdaLR(
                embedder, lambda epoch: 0.1**epoch
            ),
            "metric_loss_scheduler_by_plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(
                embedder, mode="max", patience=0, factor=0.5
            ),
        }

    def record(trainer):
        lrs.append(
            (
                trainer.optimizers["trunk_optimizer"].param_groups[0]["lr"],
                trainer.optimizers["embedder_optimizer"].param_groups[0]["lr"],
            )
        )

    trainer = build(MetricLossOnly, schedulers=schedulers, end_of_iteration_hook=record)
    train(trainer, num_epochs=2)
    # the hook runs before the per-iteration step; per-epoch steps follow each epoch
    assert [trunk for trunk, _ in lrs] == pytest.approx([0.05 / (1 + i) for i in range(8)])
    assert [embedder for _, embedder in lrs] == pytest.approx([0.005] * 4 + [0.0005] * 4)
    embedder_lr = trainer.optimizers["embedder_optimizer"].param_groups[0]
    assert embedder_lr["lr"] == pytest.approx(0.00005)
    trainer.step_lr_plateau_schedulers(0.9)  # first value: the best so far
    trainer.step_lr_plateau_schedulers(0.8)  # worse, patience 0: halve
    assert embedder_lr["lr"] == pytest.approx(0.000025)


def test_grad_clipper_clips_before_the_step():
    """Plain SGD with lr 1: a clipped trunk moves by exactly the clipping norm."""
    max_norm = 1e-3

    def clippers(models):
        return {
            "trunk_grad_clipper": lambda: torch.nn.utils.clip_grad_norm_(
                models["trunk"].parameters(), max_norm
            )
        }

    trainer = build(MetricLossOnly, batchnorm=False, clippers=clippers, iterations_per_epoch=1)
    trainer.optimizers["trunk_optimizer"] = torch.optim.SGD(
        trainer.models["trunk"].parameters(), lr=1.0
    )
    before = torch.nn.utils.parameters_to_vector(trainer.models["trunk"].parameters()).clone()
    train(trainer, num_epochs=1)
    after = torch.nn.utils.parameters_to_vector(trainer.models["trunk"].parameters())
    assert (after - before).norm().item() == pytest.approx(max_norm, rel=1e-6)


def test_only_the_given_optimizers_step():
    trainer = build(MetricLossOnly, optimizer_keys=["embedder_optimizer"])
    before = state_of(trainer.models)
    train(trainer, num_epochs=1)
    after = state_of(trainer.models)
    trunk_weights = [k for k in before["trunk"] if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(before["trunk"][k], after["trunk"][k]) for k in trunk_weights)
    assert not torch.equal(before["embedder"]["weight"], after["embedder"]["weight"])


def test_frozen_model_keeps_weights_and_batchnorm_statistics():
    modes = []
    trainer = build(
        MetricLossOnly,
        freeze_these=("trunk",),
        end_of_iteration_hook=lambda t: modes.append(t.models["trunk"].training),
    )
    before = state_of(trainer.models)
    train(trainer, num_epochs=2)
    assert_states_equal(
        {"trunk": state_of(trainer.models)["trunk"]}, {"trunk": before["trunk"]}, rtol=0, atol=0
    )
    assert not torch.equal(before["embedder"]["weight"], trainer.models["embedder"].weight)
    assert not any(modes)
    assert not any(p.requires_grad for p in trainer.models["trunk"].parameters())


def test_freeze_trunk_batchnorm_keeps_statistics_but_trains_its_weights():
    trainer = build(MetricLossOnly, freeze_trunk_batchnorm=True)
    batchnorm = trainer.models["trunk"][1]
    mean, weight = batchnorm.running_mean.clone(), batchnorm.weight.clone()
    train(trainer, num_epochs=1)
    assert torch.equal(batchnorm.running_mean, mean)
    assert not torch.equal(batchnorm.weight, weight)
    assert not batchnorm.training and trainer.models["trunk"].training


def test_subset_batch_miner_sees_eval_embeddings_without_gradient():
    seen = []
    loss = RecordingLoss()

    def subset_miner(embeddings, labels):
        seen.append((len(labels), embeddings.requires_grad, trainer.models["trunk"].training))
        return torch.arange(0, len(labels), 4)

    trainer = build(MetricLossOnly, loss=loss, miner=False, iterations_per_epoch=2)
    trainer.mining_funcs["subset_batch_miner"] = subset_miner
    train(trainer, num_epochs=1)
    assert seen == [(16, False, False)] * 2
    assert [len(call["labels"]) for call in loss.calls] == [4, 4]
    assert all(call["grad"] for call in loss.calls)


def test_label_level_mapping_and_dtype():
    x, labels = blobs(dtype=torch.float32).tensors
    two_level = torch.stack([labels * 7 + 5, labels % 2], dim=1)
    loss = RecordingLoss()
    trainer = build(
        MetricLossOnly,
        loss=loss,
        miner=False,
        dataset=torch.utils.data.TensorDataset(x, two_level),
        dtype=torch.float64,
        set_min_label_to_zero=True,
        dataset_labels=two_level.numpy(),
    )
    train(trainer, num_epochs=1)
    assert {int(v) for call in loss.calls for v in call["labels"]} == {0, 1, 2, 3}
    assert {call["dtype"] for call in loss.calls} == {torch.float64}
    level_one = RecordingLoss()
    trainer = build(
        MetricLossOnly,
        loss=level_one,
        miner=False,
        dataset=torch.utils.data.TensorDataset(x.double(), two_level),
        label_hierarchy_level=1,
    )
    train(trainer, num_epochs=1)
    assert {int(v) for call in level_one.calls for v in call["labels"]} == {0, 1}


def test_data_and_label_getter_reads_dict_samples():
    x, labels = blobs().tensors

    class DictDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return {"image": x[i], "label": labels[i]}

    loss = RecordingLoss()
    trainer = build(
        MetricLossOnly,
        loss=loss,
        miner=False,
        dataset=DictDataset(),
        data_and_label_getter=lambda batch: (batch["image"], batch["label"]),
    )
    train(trainer, num_epochs=1)
    assert len(loss.calls) == ITERATIONS_PER_EPOCH


def test_loss_weight_scales_loss_and_gradient():
    first = {}
    for weight in (1.0, 2.5):
        recorder = Recorder()
        trainer = build(
            MetricLossOnly,
            iterations_per_epoch=1,
            loss_weights={"metric_loss": weight},
            end_of_iteration_hook=recorder.end_of_iteration_hook,
        )
        train(trainer, num_epochs=1)
        first[weight] = recorder.losses("metric_loss")[0]
        grad = trainer.models["embedder"].weight.grad.clone()
        first[weight, "grad"] = grad
    assert first[2.5] == pytest.approx(2.5 * first[1.0])
    torch.testing.assert_close(first[2.5, "grad"], 2.5 * first[1.0, "grad"])


def test_non_finite_loss_stops_before_the_update():
    """(Batchnorm statistics would change in the forward pass; the weights must not.)"""
    states = []
    trainer = build(
        MetricLossOnly,
        batchnorm=False,
        loss=RecordingLoss(bad_call=3),
        miner=False,
        check_finite_loss=True,
        end_of_iteration_hook=lambda t: states.append(state_of(t.models)),
    )
    with pytest.raises(NonFiniteLossError, match="epoch 1, iteration 2") as error:
        train(trainer, num_epochs=1)
    assert error.value.epoch == 1 and error.value.iteration == 2
    assert len(states) == 2
    assert_states_equal(state_of(trainer.models), states[-1], rtol=0, atol=0)
    # without the check, the same NaN reaches the weights
    unchecked = build(MetricLossOnly, loss=RecordingLoss(bad_call=3), miner=False)
    train(unchecked, num_epochs=1)
    assert torch.isnan(unchecked.models["embedder"].weight).all()


@pytest.mark.parametrize("steps", [2, 4])
def test_accumulation_equals_a_bigger_batch(steps):
    """A per-sample loss on `steps` batches of 8 with one update = one batch of 8 * steps."""

    def run(batch_size, accumulation_steps):
        trainer = build(
            MetricLossOnly,
            batch_size=batch_size,
            batchnorm=False,
            loss=RecordingLoss(),
            miner=False,
            iterations_per_epoch=64 // batch_size,
            accumulation_steps=accumulation_steps,
        )
        return state_of(train(trainer, num_epochs=2).models)

    accumulated, big = run(8, steps), run(8 * steps, 1)
    assert_states_equal(accumulated, big, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(run(8, 1)["trunk"]["0.weight"], big["trunk"]["0.weight"])


def test_grad_scaler_path_equals_the_plain_step_and_skips_frozen_optimizers():
    """An enabled GradScaler (CPU supports one; on CUDA mixed_precision makes it) scales the
    loss by a power of two and unscales before clipping and stepping: in float64 the weights
    equal the plain run's. The frozen trunk's optimizer has no gradients and is skipped."""

    def clippers(models):
        return {
            "embedder_grad_clipper": lambda: torch.nn.utils.clip_grad_norm_(
                models["embedder"].parameters(), 0.05
            )
        }

    def run(scaler):
        trainer = build(MetricLossOnly, freeze_these=("trunk",), clippers=clippers)
        if scaler:
            trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
        return state_of(train(trainer, num_epochs=2).models), trainer

    scaled, trainer = run(scaler=True)
    plain, _ = run(scaler=False)
    assert_states_equal(scaled, plain, rtol=1e-12, atol=1e-14)
    assert trainer.grad_scaler.get_scale() == 2.0**12


def test_mixed_precision_is_harmless_on_cpu():
    plain = state_of(train(build(MetricLossOnly), num_epochs=1).models)
    mixed = state_of(train(build(MetricLossOnly, mixed_precision=True), num_epochs=1).models)
    assert_states_equal(mixed, plain, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(loss_funcs={"metric_los": losses.TripletMarginLoss()}), "loss_funcs keys must be"),
        (dict(models={"embedder": torch.nn.Linear(8, 4)}), 'models must contain "trunk"'),
        (dict(mining_funcs={"miner": None}), "mining_funcs keys must be one of"),
        (dict(lr_schedulers={"trunk_scheduler": None}), "lr_schedulers keys must be"),
        (dict(gradient_clippers={"trunk": None}), "gradient_clippers keys must be"),
        (dict(optimizers={"trunk": None}), "optimizers keys must be one of trunk_optimizer"),
        (dict(loss_weights={"metric_loss": 1, "x": 1}), "loss_weights keys must be"),
        (dict(freeze_these=("backbone",)), "freeze_these keys must be one of"),
        (dict(accumulation_steps=0), "accumulation_steps must be an int >= 1"),
        (dict(set_min_label_to_zero=True), "needs dataset_labels"),
    ],
)
def test_bad_keys_raise_pml_assertion_with_a_clear_message(kwargs, message):
    trunk = torch.nn.Linear(8, 4)
    arguments = dict(
        models={"trunk": trunk},
        optimizers={"trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1)},
        batch_size=8,
        loss_funcs={"metric_loss": losses.TripletMarginLoss()},
        dataset=blobs(),
    )
    arguments.update(kwargs)
    with pytest.raises(AssertionError, match=message):
        MetricLossOnly(**arguments)


def test_missing_important_keys_are_warnings_and_embedder_defaults_to_identity(caplog):
    trunk = torch.nn.Linear(8, 4)
    with caplog.at_level(logging.WARNING, logger="metric_runner"):
        trainer = MetricLossOnly({"trunk": trunk}, {}, 8, {}, blobs())
    assert caplog.messages == [
        'models is missing "embedder"',
        "loss_funcs is empty",
        'loss_funcs is missing "metric_loss"',
        "optimizers is empty",
        'optimizers is missing "trunk_optimizer"',
    ]
    assert isinstance(trainer.models["embedder"], torch.nn.Identity)


def test_base_trainer_alone_says_what_to_use():
    trunk = torch.nn.Linear(8, 4)
    trainer = BaseTrainer({"trunk": trunk}, {}, 8, {}, blobs(), dataloader_num_workers=0)
    with pytest.raises(TypeError, match="use a trainer such as MetricLossOnly"):
        trainer.train()


def test_accumulation_steps_optimizers_and_schedulers_once_per_window():
    """4 iterations per epoch, windows of 3: updates after iterations 2 and 3 (the epoch's last
    batch closes its partial window)."""
    steps = []

    def schedulers(optimizers):
        return {
            "trunk_scheduler_by_iteration": torch.optim.lr_scheduler.LambdaLR(
                optimizers["trunk_optimizer"], lambda step: 0.5**step
            )
        }

    trainer = build(MetricLossOnly, schedulers=schedulers, accumulation_steps=3)
    trainer.optimizers["trunk_optimizer"].register_step_post_hook(
        lambda *args: steps.append(trainer.iteration)
    )
    lrs = []
    trainer.end_of_iteration_hook = lambda t: lrs.append(
        t.optimizers["trunk_optimizer"].param_groups[0]["lr"]
    )
    train(trainer, num_epochs=2)
    assert steps == [2, 3, 2, 3]
    assert lrs == pytest.approx([0.05, 0.05, 0.05, 0.025, 0.0125, 0.0125, 0.0125, 0.00625])


@pytest.mark.parametrize("workers", [0, 2])
def test_worker_processes_persist_across_epochs(workers):
    trainer = build(MetricLossOnly)
    trainer.dataloader_num_workers = workers
    trainer.initialize_dataloader()
    assert trainer.dataloader.persistent_workers is (workers > 0)
    assert trainer.dataloader.num_workers == workers
