import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from metric_runner.runner import checkpoint
from metric_runner.runner.checkpoint import (
    CheckpointError,
    config_hash,
    differing_keys,
    load_checkpoint,
    load_models,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from metric_runner.runner.cli import compose_config
from metric_runner.runner.components import resolved_yaml


def small_state():
    model = torch.nn.Sequential()
    model.add_module("trunk", torch.nn.Linear(4, 3))
    return model, {"models": {"trunk": model.trunk.state_dict()}, "config": "seed: 0\n", "epoch": 2}


def test_save_is_atomic_and_loads_with_weights_only(tmp_path):
    model, state = small_state()
    state["rng"] = rng_states()
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(state, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    loaded = torch.load(path, weights_only=True)
    torch.testing.assert_close(loaded["models"]["trunk"]["weight"], model.trunk.weight.detach())
    assert loaded["epoch"] == 2


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    _, state = small_state()
    path = tmp_path / "last.pt"
    save_checkpoint(state, path)
    before = path.read_bytes()

    def crash(obj, file):
        open(file, "wb").write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({**state, "epoch": 3}, path)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 2


def test_truncated_checkpoint_is_one_clear_error(tmp_path):
    _, state = small_state()
    path = tmp_path / "last.pt"
    save_checkpoint(state, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value) and "truncated" in str(error.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_torch_file_that_is_not_a_run_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a metric-run checkpoint"):
        load_checkpoint(path)


def test_checkpoint_of_a_different_model_names_the_mismatch(tmp_path):
    _, state = small_state()
    other = torch.nn.Sequential()
    other.add_module("trunk", torch.nn.Linear(5, 3))
    with pytest.raises(CheckpointError) as error:
        load_models(dict(other.named_children()), state, tmp_path / "best.pt")
    assert "different model.trunk" in str(error.value) and "size mismatch" in str(error.value)
    matching, _ = small_state()
    matching.add_module("embedder", torch.nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match="has no model.embedder"):
        load_models(dict(matching.named_children()), state, tmp_path / "best.pt")


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    save_checkpoint({"rng": rng_states()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    actual = (torch.rand(3), np.random.rand(3), random.random())
    torch.testing.assert_close(actual[0], expected[0])
    np.testing.assert_array_equal(actual[1], expected[1])
    assert actual[2] == expected[2]


def test_config_hash_ignores_how_to_run_but_not_what_to_train():
    base = compose_config()
    assert config_hash(base) == config_hash(compose_config(["device=cpu", "num_workers=2"]))
    changed = compose_config(["loss.alpha=3", "optimizer.lr=0.5"])
    assert config_hash(changed) != config_hash(base)
    assert differing_keys(changed, resolved_yaml(base)) == ["loss.alpha", "optimizer.lr"]


def test_differing_keys_names_what_the_user_set_not_keys_derived_from_it():
    base = compose_config(["loss=triplet"])
    longer = compose_config(["loss=triplet", "epochs=40"])  # scheduler.T_max: ${epochs}
    assert longer.scheduler.T_max == 40 and differing_keys(longer, resolved_yaml(base)) == []
    changed = compose_config(["loss=triplet", "epochs=40", "loss.margin=0.3"])
    assert differing_keys(changed, resolved_yaml(base)) == ["loss.margin"]
    copied = OmegaConf.create({"batch_size": 64, "sampler": {"batch_size": "${batch_size}"}})
    saved = OmegaConf.to_yaml(OmegaConf.merge(copied, {"batch_size": 32}), resolve=True)
    assert differing_keys(copied, saved) == ["batch_size"]
