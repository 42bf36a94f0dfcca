import pytest
import torch

from metric_runner.miners import EmbeddingsAlreadyPackagedAsTriplets


def test_consecutive_rows_are_anchor_positive_negative(dtype, device):
    embeddings = torch.randn(9, 4, dtype=dtype, device=device)
    a, p, n = EmbeddingsAlreadyPackagedAsTriplets()(embeddings, torch.zeros(9, dtype=torch.long))
    assert a.tolist() == [0, 3, 6] and p.tolist() == [1, 4, 7] and n.tolist() == [2, 5, 8]
    assert a.device == embeddings.device and a.dtype == torch.long


def test_labels_and_reference_set_are_ignored_like_pml(pml):
    from pytorch_metric_learning.miners import EmbeddingsAlreadyPackagedAsTriplets as PMLMiner

    embeddings, labels = torch.randn(6, 3), torch.arange(6)
    ref_emb, ref_labels = torch.randn(3, 3), torch.arange(3)
    ours = EmbeddingsAlreadyPackagedAsTriplets(collect_stats=True)
    mined = ours(embeddings, labels, ref_emb, ref_labels)
    expected = PMLMiner()(embeddings, labels, ref_emb, ref_labels)
    assert [t.tolist() for t in mined] == [t.tolist() for t in expected] == [[0, 3], [1, 4], [2, 5]]
    assert ours.num_triplets == 2


def test_batch_size_must_be_a_multiple_of_three():
    with pytest.raises(ValueError, match="multiple of 3"):
        EmbeddingsAlreadyPackagedAsTriplets()(torch.randn(10, 3), torch.arange(10))


def test_sets_num_triplets_and_checks_shapes_whatever_collect_stats(pml):
    """PML records num_triplets and rejects labels of another length, or none, even though
    the triplets do not depend on them."""
    from pytorch_metric_learning.miners import EmbeddingsAlreadyPackagedAsTriplets as PMLMiner

    miner = EmbeddingsAlreadyPackagedAsTriplets(collect_stats=False)
    miner(torch.randn(12, 3), torch.arange(12))
    assert miner.num_triplets == 4
    for mine in (miner, PMLMiner()):
        with pytest.raises(ValueError):
            mine(torch.randn(6, 3), torch.arange(5))
    with pytest.raises(ValueError, match="needs labels"):
        miner(torch.randn(3, 2), None)
    with pytest.raises(AttributeError):
        PMLMiner()(torch.randn(3, 2), None)
