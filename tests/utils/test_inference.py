import numpy as np
import pytest
import torch

from metric_runner.distances import CosineSimilarity, DotProductSimilarity, LpDistance, SNRDistance
from metric_runner.utils import inference
from metric_runner.utils.inference import (
    CustomKNN,
    InferenceModel,
    MatchFinder,
    ordered_topk,
    remove_self,
)
from tests.helpers import TEST_DEVICE, assert_close, clustered_embeddings

pytestmark = pytest.mark.usefixtures("single_threaded_faiss")


@pytest.fixture
def faiss():
    return pytest.importorskip("faiss")


def brute_force_knn(query, reference, k, distance, ref_includes_query=False):
    """Every query's full ranking by (distance, reference index), written out with a loop."""
    mat = distance(query, reference)
    all_values, all_indices = [], []
    for i in range(len(query)):
        sign = -1 if distance.is_inverted else 1
        row = [sign * value for value in mat[i].tolist()]
        order = sorted(range(len(reference)), key=lambda j: (row[j], j))  # noqa: B023
        if ref_includes_query:
            order.remove(i)
        all_indices.append(order[:k])
        all_values.append([sign * row[j] for j in order[:k]])
    return torch.tensor(all_values, dtype=mat.dtype), torch.tensor(all_indices)


# ---------------------------------------------------------------- ordering and self removal


def test_ordered_topk_breaks_ties_by_column_index():
    mat = torch.tensor([[3.0, 1.0, 2.0, 1.0, 1.0, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    values, indices = ordered_topk(mat, 3, largest=False)
    assert indices.tolist() == [[5, 1, 3], [0, 1, 2]]
    assert values.tolist() == [[0.5, 1.0, 1.0], [1.0, 1.0, 1.0]]
    values, indices = ordered_topk(mat, 2, largest=True)
    assert indices.tolist() == [[0, 2], [0, 1]]
    # k close to the row length takes the sorting path: same rule.
    assert ordered_topk(mat, 5, largest=False)[1].tolist() == [[5, 1, 3, 4, 2], [0, 1, 2, 3, 4]]


def test_remove_self_drops_own_row_or_else_the_last():
    indices = torch.tensor([[0, 4, 2], [3, 1, 7], [6, 0, 5]])
    distances = indices.float()
    kept_distances, kept = remove_self(distances, indices, torch.tensor([0, 1, 2]))
    # row 0 holds itself first, row 1 holds itself second, row 2 does not hold itself.
    assert kept.tolist() == [[4, 2], [3, 7], [6, 0]]
    assert torch.equal(kept_distances, kept.float())


# ---------------------------------------------------------------- CustomKNN


@pytest.mark.parametrize(
    "distance",
    [
        LpDistance(normalize_embeddings=False, power=2),
        LpDistance(),
        LpDistance(p=1),
        CosineSimilarity(),
        DotProductSimilarity(normalize_embeddings=False),
        SNRDistance(),
    ],
    ids=["sq_l2", "l2_normalized", "l1", "cosine", "dot", "snr"],
)
@pytest.mark.parametrize("ref_includes_query", [False, True])
def test_custom_knn_matches_brute_force(distance, ref_includes_query, dtype):
    x, _ = clustered_embeddings(num_classes=6, per_class=8, dim=5, seed=1, dtype=dtype)
    x = x.detach()
    query = x[:30] if ref_includes_query else x[:20]
    reference = x if ref_includes_query else x[20:]
    expected_values, expected_indices = brute_force_knn(
        query, reference, 7, distance, ref_includes_query
    )
    for batch_size in (None, 4):
        values, indices = CustomKNN(distance, batch_size=batch_size)(
            query, 7, reference, ref_includes_query
        )
        assert torch.equal(indices.cpu(), expected_indices)
        assert_close(values.cpu(), expected_values, dtype=dtype, scale=10)


def test_custom_knn_ties_do_not_depend_on_block_size(monkeypatch):
    grid = torch.randint(0, 3, (200, 2), generator=torch.Generator().manual_seed(0)).float()
    knn = CustomKNN(LpDistance(normalize_embeddings=False, power=2))
    whole = knn(grid, 40, grid, True)
    monkeypatch.setattr(inference, "SEARCH_BLOCK_ELEMENTS", 3 * len(grid))
    blocked = knn(grid, 40, grid, True)
    assert torch.equal(whole[1], blocked[1])
    expected = brute_force_knn(
        grid, grid, 40, LpDistance(normalize_embeddings=False, power=2), True
    )[1]
    assert torch.equal(whole[1], expected)


@pytest.mark.parametrize(
    "distance",
    [LpDistance(normalize_embeddings=False), CosineSimilarity()],
    ids=["l2", "cosine"],
)
@pytest.mark.parametrize("ref_includes_query", [False, True])
def test_custom_knn_blocks_of_any_size_give_the_brute_force_answer_on_ties(
    distance, ref_includes_query
):
    # Most rows have ties inside their k and at the boundary between kept and dropped
    # neighbours. The ties must be exact whatever order a matrix product sums in: points on a
    # 3 x 3 grid for L2 (integer distances), and for cosine, axis directions scaled by 1 or 2
    # (norms are powers of two, so every normalized product is exactly -1, 0 or 1).
    generator = torch.Generator().manual_seed(3)
    if isinstance(distance, CosineSimilarity):
        axes = torch.cat([torch.eye(3), -torch.eye(3)])
        scales = torch.randint(1, 3, (40, 1), generator=generator).float()
        grid = axes[torch.randint(0, 6, (40,), generator=generator)] * scales
    else:
        grid = torch.randint(0, 3, (40, 2), generator=generator).float() + 1
    query = grid if ref_includes_query else grid[:25]
    reference = grid if ref_includes_query else grid[25:]
    expected_values, expected_indices = brute_force_knn(
        query, reference, 6, distance, ref_includes_query
    )
    for batch_size in (None, 1, 3, 7):
        values, indices = CustomKNN(distance, batch_size=batch_size)(
            query, 6, reference, ref_includes_query
        )
        assert torch.equal(indices, expected_indices), batch_size
        assert_close(values, expected_values, dtype=torch.float32)
        assert values.is_contiguous() and indices.is_contiguous()


def test_topk_candidates_writes_into_the_given_buffers():
    mat = torch.tensor([[3.0, 1.0, 2.0, 1.0, 1.0, 0.5, 4.0, 5.0]])
    out = (torch.empty(1, 4), torch.empty(1, 4, dtype=torch.long))
    values, indices = inference.topk_candidates(mat, 3, largest=False, out=out)
    # 0.5, then two of the three 1.0s: the boundary tie keeps the lowest indices, 1 and 3.
    assert (
        sorted(indices[0].tolist()) == [1, 3, 5] and out[1][0, :3].tolist() == indices[0].tolist()
    )
    assert values.data_ptr() == out[0].data_ptr()


def test_custom_knn_bad_arguments():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        CustomKNN(LpDistance(), batch_size=0)
    knn = CustomKNN(LpDistance())
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 4\]"):
        knn(x, 5, x, ref_includes_query=True)
    with pytest.raises(ValueError, match="embedding size 3 but reference has 2"):
        knn(x, 1, x[:, :2])


# ---------------------------------------------------------------- faiss


def test_faiss_knn_agrees_with_custom_knn_and_brute_force(faiss):
    from metric_runner.utils.inference import FaissKNN

    x, _ = clustered_embeddings(num_classes=10, per_class=10, dim=8, seed=2)
    x = x.detach()
    squared_l2 = LpDistance(normalize_embeddings=False, power=2)
    for query, reference, includes in [(x[:40], x[40:], False), (x[:40], x, True), (x, x, True)]:
        expected = brute_force_knn(query, reference, 9, squared_l2, includes)
        faiss_result = FaissKNN()(query, 9, reference, includes)
        custom_result = CustomKNN(squared_l2)(query, 9, reference, includes)
        for values, indices in (faiss_result, custom_result):
            assert torch.equal(indices, expected[1])
            assert_close(values, expected[0], scale=10)


def test_faiss_knn_removes_itself_even_after_a_duplicate(faiss):
    from metric_runner.utils.inference import FaissKNN

    reference = torch.tensor([[0.0], [5.0], [1.0], [5.0], [9.0]])
    # Query 1 and reference 3 coincide: 1 must be removed from row 1 and 3 from row 3.
    _, indices = FaissKNN()(reference[:4], 2, reference, ref_includes_query=True)
    assert indices.tolist() == [[2, 1], [3, 2], [0, 1], [1, 2]]


def test_faiss_knn_index_lifecycle(faiss, tmp_path):
    from metric_runner.utils.inference import FaissKNN

    x, _ = clustered_embeddings(num_classes=5, per_class=6, dim=4, seed=3)
    x = x.detach()
    knn = FaissKNN(reset_before=False, reset_after=False)
    with pytest.raises(ValueError, match="no index to search"):
        knn(x[:2], 1)
    knn.train(x[:20])
    knn.add(x[20:])
    assert knn.index.ntotal == 30
    distances, indices = knn(x[:3], 1)
    assert indices[:, 0].tolist() == [0, 1, 2] and torch.all(distances == 0)
    knn.save(tmp_path / "index.faiss")
    loaded = FaissKNN(reset_before=False, reset_after=False)
    loaded.load(tmp_path / "index.faiss")
    assert torch.equal(loaded(x[25:], 2)[1], knn(x[25:], 2)[1])
    # reset_before=False adds the given reference to the index, as PML's FaissKNN does.
    knn(x[:2], 1, x[:5])
    assert knn.index.ntotal == 35
    with pytest.raises(ValueError, match="6-d ones"):
        knn.add(torch.zeros(2, 6))
    one_shot = FaissKNN()
    one_shot(x[:2], 1, x)
    assert one_shot.index is None
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 30\]"):
        FaissKNN()(x, 31, x)


def test_faiss_kmeans_matches_pml(faiss, pml):
    from pytorch_metric_learning.utils.inference import FaissKMeans as PMLFaissKMeans

    from metric_runner.utils.inference import FaissKMeans

    x, _ = clustered_embeddings(num_classes=6, per_class=40, dim=8, seed=4)
    ours = FaissKMeans(niter=20)(x.detach(), 6)
    theirs = PMLFaissKMeans(niter=20)(x.detach(), 6)
    assert ours.dtype == torch.long and torch.equal(ours, theirs.to(ours.device))
    assert len(torch.unique(ours)) == 6


def test_faiss_knn_agrees_with_pml(faiss, pml):
    from pytorch_metric_learning.utils.inference import FaissKNN as PMLFaissKNN

    from metric_runner.utils.inference import FaissKNN

    x, _ = clustered_embeddings(num_classes=8, per_class=8, dim=6, seed=5)
    x = x.detach()
    for args in [(x[:10], 5, x[10:], False), (x[:10], 5, x, True)]:
        ours, theirs = FaissKNN()(*args), PMLFaissKNN()(*args)
        assert torch.equal(ours[1], theirs[1])
        assert_close(ours[0], theirs[0])


# ---------------------------------------------------------------- MatchFinder and InferenceModel


def test_match_finder():
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    finder = MatchFinder(CosineSimilarity(), threshold=0.7)
    # cosine similarities: (0,1)=0.8, (0,2)=0, (1,2)=0.6
    expected = np.array([[True, True, False], [True, True, False], [False, False, True]])
    assert np.array_equal(finder.get_matching_pairs(emb), expected)
    assert finder.get_matching_pairs(emb, return_tuples=True) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 2),
    ]
    assert np.array_equal(
        finder.get_matching_pairs(emb[:1], emb, threshold=-0.1), np.array([[True, True, True]])
    )
    assert finder.is_match(emb, emb[[1, 2, 0]]).tolist() == [True, False, False]
    distance_finder = MatchFinder(LpDistance(), threshold=0.7)
    # L2 distances: (0,1)=sqrt(0.4)=0.63, (1,2)=sqrt(0.8)=0.89
    assert distance_finder.is_match(emb[:2], emb[[1, 2]]).tolist() == [True, False]
    with pytest.raises(ValueError, match="No threshold"):
        MatchFinder(LpDistance()).get_matching_pairs(emb)


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))


def test_inference_model_retrieval(faiss, tmp_path):
    trunk = make_model()
    data = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    model = InferenceModel(trunk, data_device="cpu")
    embeddings = torch.nn.functional.normalize(trunk(data), dim=1).detach()
    assert_close(model.get_embeddings(data), embeddings)
    model.train_knn(torch.utils.data.TensorDataset(data[:30], torch.arange(30)), batch_size=7)
    model.add_to_knn(data[30:])
    distances, indices = model.get_nearest_neighbors(data[:5], k=3)
    expected = brute_force_knn(
        embeddings[:5], embeddings, 3, LpDistance(normalize_embeddings=False, power=2)
    )
    assert torch.equal(indices, expected[1])
    assert_close(distances, expected[0], scale=10)
    assert torch.equal(model.get_nearest_neighbors(list(data[:5]), k=3)[1], indices)
    model.save_knn_func(tmp_path / "knn.index")
    reloaded = InferenceModel(trunk, data_device="cpu")
    reloaded.load_knn_func(tmp_path / "knn.index")
    assert torch.equal(reloaded.get_nearest_neighbors(data[:5], k=3)[1], indices)
    similarities = embeddings @ embeddings.T
    assert np.array_equal(model.get_matches(data[:6]), (similarities[:6, :6] >= 0.9).numpy())
    assert np.array_equal(
        model.get_matches(data[:3], data, threshold=0.5), (similarities[:3] >= 0.5).numpy()
    )
    assert np.array_equal(
        model.is_match(data[:8], data[8:16]), (similarities[range(8), range(8, 16)] >= 0.9).numpy()
    )


def test_inference_model_agrees_with_pml(faiss, pml):
    from pytorch_metric_learning.utils.inference import InferenceModel as PMLInferenceModel

    trunk = make_model()
    data = torch.randn(30, 6, generator=torch.Generator().manual_seed(2))
    ours, theirs = (
        InferenceModel(trunk, data_device="cpu"),
        PMLInferenceModel(trunk, data_device="cpu"),
    )
    for model in (ours, theirs):
        model.train_knn(data)
    assert torch.equal(
        ours.get_nearest_neighbors(data[:4], 5)[1], theirs.get_nearest_neighbors(data[:4], 5)[1]
    )
    assert np.array_equal(
        ours.get_matches(data, threshold=0.3), theirs.get_matches(data, threshold=0.3)
    )
    assert np.array_equal(
        ours.is_match(data[:10], data[10:20]), theirs.is_match(data[:10], data[10:20])
    )
    assert ours.get_matches(data[:5], threshold=0.1, return_tuples=True) == theirs.get_matches(
        data[:5], threshold=0.1, return_tuples=True
    )


def test_inference_model_needs_an_index_keeping_knn():
    model = InferenceModel(make_model(), knn_func=CustomKNN(LpDistance()), data_device="cpu")
    with pytest.raises(TypeError, match="keeps no index"):
        model.train_knn(torch.randn(4, 6))
    with pytest.raises(TypeError, match="must be a tensor, a list of tensors or a torch Dataset"):
        InferenceModel(make_model(), data_device="cpu").get_embeddings_from_tensor_or_dataset(
            "x", 2
        )


@pytest.mark.skipif(TEST_DEVICE.type != "cuda", reason="needs TEST_DEVICE=cuda")
def test_custom_knn_on_cuda_matches_cpu():
    x = torch.randn(500, 16)
    knn = CustomKNN(LpDistance(normalize_embeddings=False, power=2))
    cpu = knn(x, 10, x, True)
    gpu = knn(x.to(TEST_DEVICE), 10, x.to(TEST_DEVICE), True)
    assert torch.equal(cpu[1], gpu[1].cpu())


# ---------------------------------------------------------------- PML's small search helpers


def test_batched_distance_hands_each_block_to_iter_fn_and_get_topk_collects_it(pml):
    from pytorch_metric_learning.utils import inference as pml_inference

    query, reference = torch.randn(7, 3), torch.randn(5, 3)
    distance = LpDistance()
    blocks = []
    batched = inference.BatchedDistance(distance, lambda mat, s, e: blocks.append((mat, s, e)), 3)
    batched(query, reference)
    assert [(s, e) for _, s, e in blocks] == [(0, 3), (3, 6), (6, 9)]  # e as PML: s + batch_size
    assert_close(torch.cat([mat for mat, _, _ in blocks]), distance(query, reference))
    assert batched.is_inverted is False and batched.normalize_embeddings
    for distance, largest in [(LpDistance(), False), (CosineSimilarity(), True)]:
        found = {}
        for name, module in [("ours", inference), ("pml", pml_inference)]:
            values, indices = torch.zeros(7, 2), torch.zeros(7, 2, dtype=torch.long)
            fn = module.get_topk(values, indices, 2, largest)
            module.BatchedDistance(distance, fn, batch_size=3)(query, reference)
            found[name] = (values, indices)
        assert_close(found["ours"][0], found["pml"][0])
        assert torch.equal(found["ours"][1], found["pml"][1])
        expected = distance(query, reference).topk(2, largest=largest)
        assert torch.equal(found["ours"][1], expected.indices)


def test_self_match_removal_helpers_match_pml(pml):
    from pytorch_metric_learning.utils import inference as pml_inference

    x = torch.tensor([[0, 1, 2], [0, 1, 2], [5, 2, 1]])
    own = torch.tensor([[True, False, False], [False, True, False], [False, False, True]])
    assert torch.equal(
        inference.mask_reshape_knn_idx(x, own), pml_inference.mask_reshape_knn_idx(x, own)
    )
    distances = torch.tensor([[0.0, 1, 2], [0.0, 1, 3]])
    for indices in (torch.tensor([[0, 1, 2], [1, 0, 2]]), torch.tensor([[2, 1, 0], [2, 0, 3]])):
        for ref_includes_query in (False, True):
            ours = inference.return_results(distances, indices, ref_includes_query)
            theirs = pml_inference.return_results(distances, indices, ref_includes_query)
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_faiss_index_helpers_match_pml(faiss, pml):
    from pytorch_metric_learning.utils import inference as pml_inference

    query, reference = torch.randn(4, 3), torch.randn(9, 3)
    results = [
        module.add_to_index_and_search(faiss.IndexFlatL2(3), query, reference, 3)
        for module in (inference, pml_inference)
    ]
    assert torch.equal(results[0][1], results[1][1]) and torch.equal(results[0][0], results[1][0])
    on_cpu = inference.try_gpu(faiss.IndexFlatL2(3), query, reference, 3, False, None)
    assert torch.equal(on_cpu[1], results[1][1])
    assert isinstance(inference.convert_to_cpu_index(faiss.IndexFlatL2(3)), faiss.IndexFlatL2)
    x = torch.randn(60, 5)
    projected = inference.run_pca(x, 2)
    assert projected.shape == (60, 2)
    torch.testing.assert_close(projected, pml_inference.run_pca(x, 2), rtol=1e-4, atol=1e-4)


def test_match_finder_operate_on_emb_matches_pml(pml):
    from pytorch_metric_learning.utils import inference as pml_inference

    query, reference = torch.randn(2, 3), torch.randn(4, 3)
    for module in (inference, pml_inference):
        finder = module.MatchFinder(LpDistance(), threshold=0.5)
        assert finder.operate_on_emb(lambda q, r: (q, r), query, reference) == (query, reference)
        q, r = finder.operate_on_emb(lambda q, r: (q, r), query)
        assert q is query and r is query
        assert finder.operate_on_emb(
            lambda q, r, extra, key: (extra, key), query, None, 7, key=8
        ) == (
            7,
            8,
        )
