"""log_stats=true: the loss's, its distance's and reducer's, and the miner's recorded
statistics in TensorBoard per step and as epoch means in metrics.jsonl."""

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metric_runner.losses import TripletMarginLoss
from metric_runner.miners import MultiSimilarityMiner
from metric_runner.runner.cli import compose_config, run
from metric_runner.runner.record_stats import collecting_stats, recorded_stats
from metric_runner.utils import common_functions as c_f

pytestmark = pytest.mark.slow
OVERRIDES = ["model=mlp", "self_supervised=null", "epochs=1", "batch_size=80"]


class WatchLossInputs:
    """on_built: keeps the built losses and, through a forward pre-hook, the (embeddings,
    labels) of every loss call."""

    def __init__(self):
        self.built, self.batches = [], []

    def __call__(self, parts):
        parts.loss.register_forward_pre_hook(
            lambda module, inputs: self.batches.append((inputs[0].detach().clone(), inputs[1]))
        )
        self.built.append(parts.loss)


def test_logged_stats_are_what_the_components_record_on_each_batch(tmp_path):
    watch = WatchLossInputs()
    records = run(compose_config([*OVERRIDES, "log_stats=true"]), tmp_path, on_built=watch)
    built, batches = watch.built, watch.batches
    assert built[0].collect_stats and built[0].distance.collect_stats
    assert c_f.COLLECT_STATS is False  # switched on only while the loss and miner were built

    # The same batches through a fresh miner give the num_pos_pairs that were logged.
    miner = MultiSimilarityMiner(epsilon=0.1, collect_stats=True)
    expected = []
    for embeddings, labels in batches:
        miner(embeddings, labels)
        expected.append(miner.num_pos_pairs)
    assert len(expected) == 9 and len(set(expected)) > 1  # 721 digits // 80, varying counts
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    logged = [e.value for e in events.Scalars("stats/miner/num_pos_pairs")]
    assert logged == expected
    assert [e.step for e in events.Scalars("stats/miner/num_pos_pairs")] == list(range(1, 10))

    stats = records[1]["stats"]
    assert stats["miner/num_pos_pairs"] == pytest.approx(sum(expected) / len(expected))
    assert {
        "miner/num_neg_pairs",
        "loss/distance/initial_avg_query_norm",
        "loss/distance/final_avg_query_norm",
        "loss/reducer/losses_size",
    } <= set(stats)
    # CosineSimilarity normalizes: the norms after it are 1 whatever the embeddings were.
    assert stats["loss/distance/final_avg_query_norm"] == pytest.approx(1, abs=1e-5)
    assert "stats" not in records[0]  # the untrained evaluation has no training step


def test_stats_are_off_by_default(tmp_path):
    watch = WatchLossInputs()
    records = run(compose_config(OVERRIDES), tmp_path, on_built=watch)
    built = watch.built
    assert not built[0].collect_stats
    assert all("stats" not in r for r in records)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("stats/")]


def test_recorded_stats_walks_the_module_tree():
    with collecting_stats(True):
        loss = TripletMarginLoss(margin=0.1)  # default distance and reducer built inside too
    assert c_f.COLLECT_STATS is False
    embeddings = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.8]])
    loss(embeddings, torch.tensor([0, 0, 1, 1]))
    stats = recorded_stats({"loss": loss, "miner": None})
    assert stats["loss/reducer/losses_size"] == 8  # 4 anchors x 1 positive x 2 negatives
    assert stats["loss/avg_triplet_margin"] == pytest.approx(float(loss.avg_triplet_margin))
    norms = torch.linalg.norm(embeddings, dim=1).mean().item()
    assert stats["loss/distance/initial_avg_query_norm"] == pytest.approx(norms)
    assert all(isinstance(value, float) for value in stats.values())
