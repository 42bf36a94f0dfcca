"""experiment=self_supervised_digits: training on two augmentations of the digits, no labels."""

import pytest
import torch
from torch.utils.data import RandomSampler

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


def constant_train_labels(parts):
    train = parts.train_set
    train.labels = torch.zeros_like(train.labels)
    train.tensors = (train.tensors[0], train.labels)


def test_training_never_reads_a_label(tmp_path):
    built = []
    records = run(compose_config(EXPERIMENT), tmp_path / "labels", on_built=built.append)
    assert isinstance(built[0].sampler.sampler, RandomSampler)  # plain shuffled batches
    losses = [r["train_loss"] for r in records[1:]]
    assert losses[-1] < losses[0]
    for record in records:  # evaluation (with labels) is logged as usual
        assert 0 <= record["accuracies"]["test"]["mean_average_precision_at_r"] <= 1

    # Every training label replaced by 0: the very same run, bit for bit.
    constant = run(
        compose_config(EXPERIMENT), tmp_path / "constant", on_built=constant_train_labels
    )
    assert constant == records
