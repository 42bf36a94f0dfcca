import math

import pytest
import torch

from metric_runner.distances import LpDistance
from metric_runner.losses import (
    ContrastiveLoss,
    CrossBatchMemory,
    IntraPairVarianceLoss,
    PNPLoss,
    TripletMarginLoss,
    TupletMarginLoss,
)
from metric_runner.miners import MultiSimilarityMiner
from metric_runner.reducers import SumReducer
from tests.helpers import TEST_DEVICE, assert_close
from tests.losses import tuple_loss_helpers as h


def batch(start, size=3, dim=2):
    """Embeddings whose first coordinate tells which row of which batch they are."""
    emb = torch.arange(start, start + size, dtype=torch.float32).unsqueeze(1).repeat(1, dim)
    return emb.requires_grad_(True), torch.arange(start, start + size) % 2


def test_queue_contents_after_several_enqueues():
    memory = CrossBatchMemory(ContrastiveLoss(), embedding_size=2, memory_size=5)
    # Rows 0-2, then 3-5 (wrapping around), then 7-9.
    expected_rows = [[0, 1, 2, 0, 0], [5, 1, 2, 3, 4], [5, 7, 8, 9, 4]]
    expected_idx, expected_filled = [3, 1, 4], [False, True, True]
    for step, start in enumerate((0, 3, 7)):
        memory(*batch(start))
        assert memory.embedding_memory[:, 0].tolist() == expected_rows[step]
        assert memory.label_memory.tolist() == [int(v) % 2 for v in expected_rows[step]]
        assert (
            memory.queue_idx == expected_idx[step]
            and memory.has_been_filled == expected_filled[step]
        )
    assert memory.curr_batch_idx.tolist() == [1, 2, 3]


def test_queue_contents_with_enqueue_mask():
    memory = CrossBatchMemory(ContrastiveLoss(), embedding_size=2, memory_size=5)
    mask = torch.tensor([True, False, True, False])
    expected_rows = [[0, 2, 0, 0, 0], [0, 2, 4, 6, 0], [10, 2, 4, 6, 8]]
    for step in range(3):
        emb, labels = batch(4 * step, size=4)
        memory(emb, labels, enqueue_mask=mask)
        assert memory.embedding_memory[:, 0].tolist() == expected_rows[step]
    assert memory.queue_idx == 1 and memory.has_been_filled


def test_reset_queue_empties_the_memory():
    memory = CrossBatchMemory(ContrastiveLoss(), embedding_size=2, memory_size=5)
    memory(*batch(1))
    memory.reset_queue()
    assert memory.embedding_memory.abs().sum() == 0 and memory.label_memory.abs().sum() == 0
    assert memory.queue_idx == 0 and not memory.has_been_filled


def test_hand_computed_loss_against_the_memory():
    # Second batch: anchors are its 2 rows, references the 4 stored rows minus each anchor's own
    # copy; contrastive with margins (0, 10), unnormalized distances and a sum reduction.
    inner = ContrastiveLoss(
        pos_margin=0,
        neg_margin=10,
        distance=LpDistance(normalize_embeddings=False),
        reducer=SumReducer(),
    )
    memory = CrossBatchMemory(inner, embedding_size=2, memory_size=6)
    first = torch.tensor([[0.0, 1.0], [2.0, 0.5]])
    second = torch.tensor([[1.0, 1.0], [-1.0, 3.0]])
    memory(first, torch.tensor([0, 1]))
    loss = memory(second, torch.tensor([1, 1]))
    stored, stored_labels = torch.cat([first, second]).tolist(), [0, 1, 1, 1]
    expected = 0.0
    for i, (x, label) in enumerate(zip(second.tolist(), [1, 1])):
        for j, (y, ref_label) in enumerate(zip(stored, stored_labels)):
            if j == 2 + i:
                continue
            d = math.dist(x, y)
            expected += d if label == ref_label else max(10 - d, 0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


INNER = [
    lambda lib: lib.losses.ContrastiveLoss(pos_margin=0.1, neg_margin=0.8),
    lambda lib: lib.losses.TripletMarginLoss(margin=0.2),
    lambda lib: lib.losses.TupletMarginLoss(scale=8),
    lambda lib: lib.losses.IntraPairVarianceLoss(pos_eps=0.1),
]


@pytest.mark.parametrize(
    "inner, with_miner", [(inner, False) for inner in INNER] + [(INNER[0], True), (INNER[2], True)]
)
def test_matches_pml_over_a_sequence_of_batches(pml, dtype, inner, with_miner):
    libs = [h.library("metric_runner"), h.library("pytorch_metric_learning")]
    miners = [None, None]
    if with_miner:
        import pytorch_metric_learning.miners

        import metric_runner.miners

        miners = [
            metric_runner.miners.MultiSimilarityMiner(0.2),
            pytorch_metric_learning.miners.MultiSimilarityMiner(0.2),
        ]
    ours, theirs = (
        lib.losses.CrossBatchMemory(inner(lib), 8, memory_size=20, miner=miner)
        for lib, miner in zip(libs, miners)
    )
    generator = torch.Generator().manual_seed(0)
    for step in range(7):
        emb = torch.randn(6, 8, generator=generator, dtype=dtype)
        labels = torch.randint(0, 3, (6,), generator=generator)
        mask = torch.tensor([True, False, True, True, False, True]) if step % 3 == 1 else None
        indices = h.mined_pairs(labels) if step == 3 else None
        results = []
        for loss_fn in (ours, theirs):
            x = emb.clone().requires_grad_(True)
            value = loss_fn(x, labels, indices, enqueue_mask=mask)
            (grad,) = torch.autograd.grad(value, [x], allow_unused=True)
            results.append((value.detach(), torch.zeros_like(x) if grad is None else grad))
        assert_close(results[0][0], results[1][0], dtype, scale=10)
        assert_close(results[0][1], results[1][1], dtype, scale=10)
        assert torch.equal(ours.embedding_memory, theirs.embedding_memory)
        assert torch.equal(ours.label_memory, theirs.label_memory)
        assert (ours.queue_idx, ours.has_been_filled) == (theirs.queue_idx, theirs.has_been_filled)


def test_supported_losses_match_pml(pml):
    theirs = h.library("pytorch_metric_learning").losses.CrossBatchMemory
    assert sorted(CrossBatchMemory.supported_losses()) == sorted(theirs.supported_losses())


def test_subclass_of_a_supported_loss_is_accepted():
    class MyContrastive(ContrastiveLoss):
        pass

    assert isinstance(CrossBatchMemory(MyContrastive(), 2).loss, MyContrastive)


def test_memory_follows_the_embeddings_dtype():
    memory = CrossBatchMemory(TripletMarginLoss(), embedding_size=2, memory_size=4)
    emb, labels = batch(0)
    memory(emb.double(), labels)
    assert memory.embedding_memory.dtype == torch.float64


def test_labels_on_another_device():
    emb, labels = batch(0, size=4)
    expected = CrossBatchMemory(IntraPairVarianceLoss(), 2)(emb, labels)
    moved = CrossBatchMemory(IntraPairVarianceLoss(), 2)(emb.detach().to(TEST_DEVICE), labels.cpu())
    assert_close(moved.cpu(), expected)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="does not support PNPLoss.*ContrastiveLoss"):
        CrossBatchMemory(PNPLoss(), 2)
    with pytest.raises(ValueError, match="memory_size"):
        CrossBatchMemory(ContrastiveLoss(), 2, memory_size=0)
    memory = CrossBatchMemory(ContrastiveLoss(), embedding_size=2, memory_size=2)
    emb, labels = batch(0)
    with pytest.raises(ValueError, match="memory_size at least as large"):
        memory(emb, labels)
    with pytest.raises(ValueError, match="embedding_size=3"):
        CrossBatchMemory(ContrastiveLoss(), 3)(emb, labels)
    with pytest.raises(ValueError, match="boolean"):
        CrossBatchMemory(ContrastiveLoss(), 2)(emb, labels, enqueue_mask=torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="needs labels"):
        CrossBatchMemory(ContrastiveLoss(), 2)(emb, None)


def test_works_with_a_miner_and_tuplet_loss():
    memory = CrossBatchMemory(TupletMarginLoss(), 2, miner=MultiSimilarityMiner())
    emb, labels = batch(0, size=4)
    assert torch.isfinite(memory(torch.randn(4, 2), labels))
