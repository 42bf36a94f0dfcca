"""experiment=self_supervised_digits: training on two augmentations of the digits, no labels."""

import pytest
import torch
from torch.utils.data import RandomSampler

from metric_runner.runner import train as train_module
from metric_runner.runner.cli import compose_config, run
from metric_runner.runner.components import check_config
from metric_runner.runner.registry import ConfigError

pytestmark = pytest.mark.slow
EXPERIMENT = ["experiment=self_supervised_digits", "model=mlp", "epochs=3"]


def test_the_experiment_has_only_the_self_supervised_term():
    specs = check_config(compose_config(["experiment=self_supervised_digits"]))
    assert (specs.loss, specs.miner, specs.sampler) == (None, None, None)
    assert specs.self_supervised.weight == 1
    assert specs.self_supervised.loss.build().loss.temperature == 0.1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss=null", "self_supervised=null", "miner=null"], "loss: training needs a loss"),
        (["loss=null"], "miner: there is no loss to mine pairs for"),
    ],
)
def test_a_run_with_nothing_to_train_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(compose_config(overrides))


def with_constant_train_labels(load_splits):
    def load(dataset_spec, names):
        splits = load_splits(dataset_spec, names)
        train = splits["train"]
        train.labels = torch.zeros_like(train.labels)
        train.tensors = (train.tensors[0], train.labels)
        return splits

    return load


def test_training_never_reads_a_label(tmp_path, monkeypatch):
    samplers = []
    make_loader = train_module.make_loader

    def keep_sampler(dataset, batch_size, sampler, *args):
        samplers.append(sampler)
        return make_loader(dataset, batch_size, sampler, *args)

    monkeypatch.setattr(train_module, "make_loader", keep_sampler)
    records = run(compose_config(EXPERIMENT), tmp_path / "labels")
    assert isinstance(samplers[0], RandomSampler)  # plain shuffled batches
    losses = [r["train_loss"] for r in records[1:]]
    assert losses[-1] < losses[0]
    for record in records:  # evaluation (with labels) is logged as usual
        assert 0 <= record["accuracies"]["test"]["mean_average_precision_at_r"] <= 1

    # Every training label replaced by 0: the very same run, bit for bit.
    monkeypatch.setattr(
        train_module, "load_splits", with_constant_train_labels(train_module.load_splits)
    )
    assert run(compose_config(EXPERIMENT), tmp_path / "constant") == records
