"""Generated data, small models and a recorder shared by the trainer tests.

`build(trainer_class, ...)` makes a fresh, seeded set of models/optimizers/losses, so the same
call with PML's trainer class and with ours gives two identical starting points."""

import copy

import torch

from metric_runner import losses, miners

DIM, TRUNK_OUT, EMBED = 8, 12, 4


def run_recorded(trainer_class, num_epochs=3, **build_kwargs):
    """Build, train from a fixed RNG state, and return (recorder, trainer)."""
    recorder = Recorder()
    trainer = build(
        trainer_class,
        end_of_iteration_hook=recorder.end_of_iteration_hook,
        end_of_epoch_hook=recorder.end_of_epoch_hook,
        **build_kwargs,
    )
    return recorder, train(trainer, num_epochs=num_epochs)


def assert_same_run(ours, theirs, rtol=1e-10, atol=1e-12):
    """Same hook view at every iteration and the same final weights (two (recorder, trainer))."""
    (recorder, trainer), (expected_recorder, expected) = ours, theirs
    assert len(recorder.iterations) == len(expected_recorder.iterations) > 0
    for mine, pml in zip(recorder.iterations, expected_recorder.iterations):
        assert {k: mine[k] for k in ("epoch", "iteration", "global", "shared")} == {
            k: pml[k] for k in ("epoch", "iteration", "global", "shared")
        }
        assert mine["losses"].keys() == pml["losses"].keys()
        for name, value in pml["losses"].items():
            assert abs(mine["losses"][name] - value) <= atol + rtol * abs(value), name
    assert_states_equal(state_of(trainer.models), state_of(expected.models), rtol=rtol, atol=atol)
    missing = set(vars(expected)) - set(vars(trainer))
    assert not missing, f"attributes PML's hooks could read but ours lacks: {missing}"


def blobs(n=64, classes=4, seed=0, dtype=torch.float64):
    """Points around one center per class: a metric loss on them can clearly decrease."""
    generator = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, DIM, generator=generator, dtype=torch.float64)
    labels = torch.arange(n) % classes
    x = centers[labels] + torch.randn(n, DIM, generator=generator, dtype=torch.float64)
    return torch.utils.data.TensorDataset(x.to(dtype), labels)


def trunk_and_embedder(seed=0, dtype=torch.float64, batchnorm=True):
    torch.manual_seed(seed)
    norm = torch.nn.BatchNorm1d(16) if batchnorm else torch.nn.Identity()
    trunk = torch.nn.Sequential(
        torch.nn.Linear(DIM, 16), norm, torch.nn.ReLU(), torch.nn.Linear(16, TRUNK_OUT)
    )
    return trunk.to(dtype), torch.nn.Linear(TRUNK_OUT, EMBED).to(dtype)


def optimizers_for(models, lr=0.05):
    """SGD with momentum for the trunk, Adam for the rest (two kinds, both stateful)."""
    return {
        f"{name}_optimizer": (
            torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            if name == "trunk"
            else torch.optim.Adam(model.parameters(), lr=lr / 10)
        )
        for name, model in models.items()
        if any(p.requires_grad for p in model.parameters())
    }


class Recorder:
    """An end-of-iteration/epoch hook that stores what PML's hooks read."""

    def __init__(self, stop_at_epoch=None):
        self.iterations, self.epochs, self.stop_at_epoch = [], [], stop_at_epoch

    def end_of_iteration_hook(self, trainer):
        self.iterations.append(
            {
                "epoch": trainer.epoch,
                "iteration": trainer.iteration,
                "global": trainer.get_global_iteration(),
                "losses": {
                    k: float(torch.as_tensor(v).detach()) for k, v in trainer.losses.items()
                },
                "shared": trainer.losses is trainer.loss_tracker.losses,
            }
        )

    def end_of_epoch_hook(self, trainer):
        self.epochs.append((trainer.epoch, dict(trainer.losses)))
        return trainer.epoch != self.stop_at_epoch

    def losses(self, name="total_loss"):
        return [it["losses"][name] for it in self.iterations]


def build(
    trainer_class,
    seed=0,
    batch_size=16,
    embedder=True,
    batchnorm=True,
    miner=True,
    loss=None,
    schedulers=None,
    clippers=None,
    dataset=None,
    optimizer_keys=None,
    extra_models=None,
    loss_funcs=None,
    mining_funcs=None,
    model_dtype=torch.float64,
    **kwargs,
):
    """A trainer on `blobs()` with a fresh seeded trunk (+ embedder), optimizers, a triplet loss
    and a multi-similarity miner; `schedulers(optimizers)` and `clippers(models)` build the
    lr_schedulers and gradient_clippers dicts for this trainer's own objects."""
    trunk, embedder_model = trunk_and_embedder(seed, dtype=model_dtype, batchnorm=batchnorm)
    models = {"trunk": trunk, "embedder": embedder_model} if embedder else {"trunk": trunk}
    models.update({name: make().to(model_dtype) for name, make in (extra_models or {}).items()})
    optimizers = optimizers_for(models)
    if optimizer_keys is not None:
        optimizers = {key: optimizers[key] for key in optimizer_keys}
    return trainer_class(  # by keyword, as DeepAdversarialMetricLearning's signature needs
        models=models,
        optimizers=optimizers,
        batch_size=batch_size,
        loss_funcs=loss_funcs
        if loss_funcs is not None
        else {"metric_loss": losses.TripletMarginLoss(margin=0.2) if loss is None else loss},
        dataset=blobs(dtype=model_dtype) if dataset is None else dataset,
        mining_funcs=mining_funcs
        if mining_funcs is not None
        else {"tuple_miner": miners.MultiSimilarityMiner(epsilon=0.2)}
        if miner
        else {},
        lr_schedulers=schedulers(optimizers) if schedulers else None,
        gradient_clippers=clippers(models) if clippers else None,
        dataloader_num_workers=0,
        **kwargs,
    )


def train(trainer, num_epochs=2, start_epoch=1, seed=123):
    """Train from a fixed RNG state, so two trainers shuffle the data identically."""
    torch.manual_seed(seed)
    trainer.train(start_epoch=start_epoch, num_epochs=num_epochs)
    return trainer


def state_of(models):
    return {name: copy.deepcopy(model.state_dict()) for name, model in models.items()}


def assert_states_equal(actual, expected, **tolerance):
    assert actual.keys() == expected.keys()
    for name in expected:
        for key in expected[name]:
            torch.testing.assert_close(
                actual[name][key], expected[name][key], **tolerance, msg=f"{name}.{key}"
            )
