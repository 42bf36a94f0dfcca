"""The `trainer` group: each of PML's trainers trains the digits through metric-run, with the
parts its config adds built, sized, optimized and checkpointed by the runner."""

import pytest
import torch

from metric_runner.runner.checkpoint import load_checkpoint
from metric_runner.runner.cli import compose_config, run
from metric_runner.runner.components import check_config
from metric_runner.runner.registry import ConfigError
from tests.runner.test_train import InterruptAfterEpoch

pytestmark = pytest.mark.slow
BASE = ["model=mlp", "self_supervised=null", "epochs=1"]


def map_at_r(record):
    return record["accuracies"]["val"]["mean_average_precision_at_r"]


class KeepParts(list):
    def __call__(self, parts):
        self.append(parts)


@pytest.mark.parametrize(
    ("trainer", "losses", "models"),
    [
        ("train_with_classifier", {"metric_loss", "classifier_loss"}, {"classifier"}),
        ("cascaded_embeddings", {"metric_loss_0", "metric_loss_1"}, set()),
        ("deep_adversarial", {"metric_loss", "synth_loss", "g_adv_loss"}, {"generator"}),
        ("two_stream", {"metric_loss"}, set()),
    ],
)
def test_each_trainer_learns_the_digits(tmp_path, trainer, losses, models):
    built = KeepParts()
    records = run(compose_config([*BASE, f"trainer={trainer}"]), tmp_path, on_built=built)
    assert map_at_r(records[1]) > map_at_r(records[0]) + 0.2
    parts = built[0]
    assert {*parts.loss_funcs, *parts.extra_losses} == losses
    assert set(parts.extra_models) == models
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert set(saved["models"]) == {"trunk", "embedder", *models}
    assert set(saved["extra_optimizers"]) == {f"{name}_optimizer" for name in models}


def test_added_parts_are_sized_from_the_data_and_the_model(tmp_path):
    built = KeepParts()
    run(
        compose_config([*BASE, "epochs=0", "trainer=train_with_classifier"]),
        tmp_path / "c",
        on_built=built,
    )
    classifier = built[0].extra_models["classifier"]
    assert (classifier.in_features, classifier.out_features) == (64, 5)  # embeddings -> digits 0-4
    run(
        compose_config([*BASE, "epochs=0", "trainer=deep_adversarial"]),
        tmp_path / "d",
        on_built=built,
    )
    generator = built[1].extra_models["generator"]
    trunk_features = 256  # the MLP trunk's last hidden size
    output = generator(torch.zeros(2, 3 * trunk_features))
    assert output.shape == (2, trunk_features)


def test_a_cascade_that_does_not_cut_the_embedding_exactly_is_refused(tmp_path):
    cfg = compose_config([*BASE, "trainer=cascaded_embeddings", "trainer.embedding_sizes=[32,16]"])
    check_config(cfg)
    with pytest.raises(ConfigError, match=r"\[32, 16\] add up to 48, but .* 64 dimensions"):
        run(cfg, tmp_path)


def test_the_adversarial_run_resumes_exactly_with_the_generators_optimizer(tmp_path):
    overrides = [*BASE, "trainer=deep_adversarial", "epochs=2"]
    straight = run(compose_config(overrides), tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(compose_config(overrides), tmp_path / "resumed", [InterruptAfterEpoch(1)])
    resumed = run(
        compose_config([*overrides, f"resume={tmp_path / 'resumed'}"]), tmp_path / "resumed"
    )
    assert resumed == straight


def test_a_trainer_without_extra_loss_terms_refuses_the_self_supervised_term(tmp_path):
    with pytest.raises(ConfigError, match="self_supervised: TwoStreamMetricLoss does not add"):
        run(compose_config(["model=mlp", "epochs=1", "trainer=two_stream"]), tmp_path)
