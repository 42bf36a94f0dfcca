"""Issue 10: behaviours of losses, miners, reducers, distances, regularizers, samplers and
loss_and_miner_utils that PML users rely on, each compared with PML 2.9.0 on an input chosen to
expose the difference."""

import types

import numpy as np
import pytest
import torch

pml = pytest.importorskip("pytorch_metric_learning")

import pytorch_metric_learning.utils.common_functions as pml_c_f  # noqa: E402
from pytorch_metric_learning import distances as pml_distances  # noqa: E402
from pytorch_metric_learning import losses as pml_losses  # noqa: E402
from pytorch_metric_learning import miners as pml_miners  # noqa: E402
from pytorch_metric_learning import reducers as pml_reducers  # noqa: E402
from pytorch_metric_learning import regularizers as pml_regularizers  # noqa: E402
from pytorch_metric_learning import samplers as pml_samplers  # noqa: E402
from pytorch_metric_learning.utils import loss_and_miner_utils as pml_lmu  # noqa: E402

from metric_runner import distances, losses, miners, reducers, regularizers, samplers  # noqa: E402
from metric_runner.utils import common_functions as c_f  # noqa: E402
from metric_runner.utils import loss_and_miner_utils as lmu  # noqa: E402
from tests.losses.test_angular_loss import hand_pair_losses  # noqa: E402
from tests.losses.test_smooth_ap_loss import hand_query_losses  # noqa: E402
from tests.miners.helpers import tuple_sets  # noqa: E402

OURS = types.SimpleNamespace(
    distances=distances,
    losses=losses,
    miners=miners,
    reducers=reducers,
    regularizers=regularizers,
    samplers=samplers,
    lmu=lmu,
)
PML = types.SimpleNamespace(
    distances=pml_distances,
    losses=pml_losses,
    miners=pml_miners,
    reducers=pml_reducers,
    regularizers=pml_regularizers,
    samplers=pml_samplers,
    lmu=pml_lmu,
)


def batch(n=24, dim=6, num_classes=4, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, dim, generator=generator, dtype=dtype)
    return embeddings, torch.randint(0, num_classes, (n,), generator=generator)


# ---------------------------------------------------------------- accept what PML accepts

DISTANCES = {
    "Lp": lambda lib: lib.distances.LpDistance(),
    "squared Lp": lambda lib: lib.distances.LpDistance(power=2, normalize_embeddings=False),
    "SNR": lambda lib: lib.distances.SNRDistance(),
    "dot": lambda lib: lib.distances.DotProductSimilarity(),
}
LABELS = {
    "mixed": torch.tensor([0, 0, 1, 2, 3, 3, 1, 2]),
    "no negative pair": torch.zeros(8, dtype=torch.long),
    "no positive pair": torch.arange(8),
}


@pytest.mark.parametrize("loss_name", ["SupConLoss", "NTXentLoss"])
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("labels", LABELS)
def test_contrastive_losses_take_any_distance_as_pml(loss_name, distance, labels):
    embeddings, _ = batch(n=8)

    def value(lib):
        loss_fn = getattr(lib.losses, loss_name)(temperature=0.3, distance=DISTANCES[distance](lib))
        return loss_fn(embeddings, LABELS[labels])

    ours, theirs = value(OURS), value(PML)
    torch.testing.assert_close(ours, theirs.to(ours.dtype))
    if labels != "mixed":
        assert ours.item() == 0


def compute_mat_only_distance(lib):
    """A custom distance as PML's docs write one: compute_mat only; it flattens N-D rows."""

    class FlatEuclidean(lib.distances.BaseDistance):
        def compute_mat(self, query_emb, ref_emb):
            return torch.cdist(query_emb.flatten(1), ref_emb.flatten(1))

        def check_shapes(self, query_emb, ref_emb):
            pass

    return FlatEuclidean(normalize_embeddings=False)


def test_a_distance_defining_only_compute_mat_is_usable():
    embeddings, labels = batch(n=10)
    pairs = {}
    for name, lib in (("ours", OURS), ("pml", PML)):
        distance = compute_mat_only_distance(lib)
        pairs[name] = lib.miners.MultiSimilarityMiner(distance=distance)(embeddings, labels)
        with pytest.raises(NotImplementedError):
            distance.pairwise_distance(embeddings, embeddings)
    assert tuple_sets(pairs["ours"]) == tuple_sets(pairs["pml"])


def test_a_custom_distance_may_take_nd_embeddings():
    embeddings, labels = batch(n=10, dim=6)
    cubes = embeddings.view(10, 2, 3)
    distance = compute_mat_only_distance(OURS)
    torch.testing.assert_close(distance(cubes), torch.cdist(embeddings, embeddings))
    ours = losses.ContrastiveLoss(distance=distance)(cubes, labels)
    theirs = pml_losses.ContrastiveLoss(distance=compute_mat_only_distance(PML))(cubes, labels)
    torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match="2D"):
        distances.LpDistance()(cubes)


def test_ranked_list_loss_refuses_a_similarity_and_says_why():
    embeddings, labels = batch()
    # PML computes a number, but with thresholds meant for distances.
    pml_losses.RankedListLoss(margin=0.4, Tn=1, distance=pml_distances.CosineSimilarity())(
        embeddings, labels
    )
    with pytest.raises(AssertionError, match="PML accepts a similarity"):
        losses.RankedListLoss(margin=0.4, Tn=1, distance=distances.CosineSimilarity())


# ---------------------------------------------------------------- same semantics, same numbers


def documented_example_pair_miner(lib):
    """PML's "custom miners" documentation example, unchanged."""

    class ExamplePairMiner(lib.miners.BaseMiner):
        def __init__(self, margin=0.1, **kwargs):
            super().__init__(**kwargs)
            self.margin = margin

        def mine(self, embeddings, labels, ref_emb, ref_labels):
            mat = self.distance(embeddings, ref_emb)
            a1, p, a2, n = lib.lmu.get_all_pairs_indices(labels, ref_labels)
            pos_pairs = mat[a1, p]
            neg_pairs = mat[a2, n]
            pos_mask = (
                pos_pairs < self.margin if self.distance.is_inverted else pos_pairs > self.margin
            )
            neg_mask = (
                neg_pairs > self.margin if self.distance.is_inverted else neg_pairs < self.margin
            )
            return a1[pos_mask], p[pos_mask], a2[neg_mask], n[neg_mask]

    return ExamplePairMiner(margin=1.2)


def test_documented_custom_miner_mines_no_self_pairs():
    embeddings, labels = batch()
    ours = documented_example_pair_miner(OURS)(embeddings, labels)
    theirs = documented_example_pair_miner(PML)(embeddings, labels)
    assert not torch.any(ours[0] == ours[1])
    for mine, their in zip(ours, theirs):
        assert torch.equal(mine, their)


@pytest.mark.parametrize(
    "function", ["get_all_pairs_indices", "get_all_triplets_indices", "get_matches_and_diffs"]
)
@pytest.mark.parametrize("ref", ["same object", "equal copy", "None"])
def test_ref_labels_that_are_labels_mean_the_same_set(function, ref):
    _, labels = batch(n=12)
    ref_labels = {"same object": labels, "equal copy": labels.clone(), "None": None}[ref]
    ours = getattr(lmu, function)(labels, ref_labels)
    theirs = getattr(pml_lmu, function)(labels, ref_labels)
    for mine, their in zip(ours, theirs):
        assert torch.equal(mine.long(), their.long())


def test_random_triplets_with_ref_labels_that_are_labels_have_no_self_pairs():
    _, labels = batch(n=12)
    anchors, positives, _ = lmu.get_random_triplet_indices(labels, labels)
    assert len(anchors) > 0 and not torch.any(anchors == positives)


def test_hdc_miner_keeps_pml_pairs_in_pml_order():
    # Small integer coordinates: many equal distances, so ties fall at the cut.
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        embeddings = torch.randint(0, 3, (14, 3), generator=generator).float()
        labels = torch.randint(0, 3, (14,), generator=generator)
        for distance in ("LpDistance", "CosineSimilarity"):
            ours = miners.HDCMiner(0.3, distance=getattr(distances, distance)())
            theirs = pml_miners.HDCMiner(0.3, distance=getattr(pml_distances, distance)())
            for mine, their in zip(ours(embeddings, labels), theirs(embeddings, labels)):
                assert torch.equal(mine, their)


@pytest.mark.parametrize(
    "make",
    [
        lambda lib: lib.reducers.AvgNonZeroReducer(),
        lambda lib: lib.reducers.ThresholdReducer(0.2, 1.5),
    ],
)
def test_reducers_return_pml_bits_in_float32(make):
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        values = torch.randn(5000, generator=generator).relu() * 2
        loss_dict = {
            "loss": {"losses": values, "indices": torch.arange(5000), "reduction_type": "element"}
        }
        ours = make(OURS)(loss_dict, None, None)
        theirs = make(PML)(loss_dict, torch.zeros(1), None)
        assert torch.equal(ours, theirs)


def test_contrastive_loss_value_is_pml_bits_in_float32():
    for seed in range(10):
        embeddings, labels = batch(n=64, dim=16, num_classes=8, seed=seed, dtype=torch.float32)
        ours = losses.ContrastiveLoss()(embeddings, labels)
        assert torch.equal(ours, pml_losses.ContrastiveLoss()(embeddings, labels))


def test_dynamic_soft_margin_without_labels_and_unequal_sizes_follows_the_paper():
    # Paper (and PML for equal sizes): row i and ref row i match; the negative of pair i is the
    # closest non-matching entry of row i or column i. With more ref rows, ours lets the extra
    # rows serve as negatives only; PML gives another number (0.3857 vs our 0.5468 here).
    torch.manual_seed(0)
    embeddings, ref_emb = torch.randn(5, 4), torch.randn(8, 4)
    ours = losses.DynamicSoftMarginLoss()(embeddings, ref_emb=ref_emb)
    dist = torch.cdist(*(torch.nn.functional.normalize(x) for x in (embeddings, ref_emb)))
    positives = torch.diagonal(dist)
    others = dist + torch.eye(5, 8) * 10
    negatives = torch.minimum(others.min(dim=1).values, others[:, :5].min(dim=0).values)
    deltas = positives - negatives
    # First call: the histogram is this batch's interpolated counts; F(Δ) is its CDF.
    position = ((deltas + 2) / 0.4).clamp(0, 9)
    lower = position.floor().clamp(max=8)
    counts = torch.zeros(10).index_add(0, lower.long(), 1 - (position - lower))
    counts = counts.index_add(0, lower.long() + 1, position - lower)
    cdf = torch.cumsum(counts / counts.sum(), 0)[position.floor().long()]
    torch.testing.assert_close(ours, torch.mean(cdf * deltas))
    theirs = pml_losses.DynamicSoftMarginLoss()(embeddings, ref_emb=ref_emb)
    assert ours.item() == pytest.approx(0.5468, abs=1e-4)
    assert theirs.item() == pytest.approx(0.3857, abs=1e-4)


def test_angular_loss_is_the_papers_at_every_scale_unlike_pml():
    embeddings = torch.tensor(
        [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]], dtype=torch.float64
    )
    labels = torch.tensor([0, 0, 1, 1])
    expected = hand_pair_losses(embeddings, labels, alpha=40)
    paper = sum(expected.values()) / len(expected)
    for scale, pml_value in ((1, 0.3124), (3, 2.4346), (10, 14.1716)):
        ours = losses.AngularLoss()(embeddings * scale, labels)
        assert ours.item() == pytest.approx(paper, rel=1e-12)
        theirs = pml_losses.AngularLoss()(embeddings * scale, labels)
        assert theirs.item() == pytest.approx(pml_value, abs=1e-4)


def test_smooth_ap_loss_is_the_papers_for_any_label_layout_unlike_pml():
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64))
    for labels, pml_value in (([0, 0, 1, 1, 2, 2], 0.2388), ([0, 0, 0, 1, 1, 1], 0.0869)):
        labels = torch.tensor(labels)
        expected = hand_query_losses(embeddings, labels, 0.1)
        ours = losses.SmoothAPLoss(temperature=0.1)(embeddings, labels)
        assert ours.dtype == torch.float64
        assert ours.item() == pytest.approx(sum(expected.values()) / len(expected), rel=1e-9)
        theirs = pml_losses.SmoothAPLoss(temperature=0.1)(embeddings, labels)
        assert theirs.dtype == torch.float32 and theirs.item() == pytest.approx(pml_value, abs=1e-4)
    # PML is right where its layout assumption holds: 3 contiguous classes of 3.
    embeddings = torch.nn.functional.normalize(torch.randn(9, 3, dtype=torch.float64))
    labels = torch.arange(3).repeat_interleave(3)
    theirs = pml_losses.SmoothAPLoss(temperature=0.1)(embeddings, labels)
    ours = losses.SmoothAPLoss(temperature=0.1)(embeddings, labels)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


# ---------------------------------------------------------------- the same errors

EMB, LAB = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
TRIPLET = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
LABELS_100 = list(range(10)) * 10


def loss_info(reduction_type, losses_=None, indices=None):
    values = torch.ones(3) if losses_ is None else losses_
    if indices is None:
        indices = tuple([torch.arange(3)] * 3) if reduction_type == "triplet" else torch.arange(3)
    return {"loss": {"losses": values, "indices": indices, "reduction_type": reduction_type}}


BAD_CALLS = {
    "HistogramLoss n_bins and delta": lambda L: L.losses.HistogramLoss(n_bins=10, delta=0.3),
    "ManifoldLoss embedding size != l": lambda L: L.losses.ManifoldLoss(l=5)(EMB),
    "MultipleLosses weights length": lambda L: L.losses.MultipleLosses(
        [L.losses.ContrastiveLoss(), L.losses.TripletMarginLoss()], weights=[1.0]
    ),
    "MultipleLosses weights keys": lambda L: L.losses.MultipleLosses(
        {"a": L.losses.ContrastiveLoss(), "b": L.losses.TripletMarginLoss()}, weights={"a": 1}
    ),
    "MultipleLosses weights type": lambda L: L.losses.MultipleLosses(
        {"a": L.losses.ContrastiveLoss()}, weights=[1.0]
    ),
    "MultipleLosses miners keys": lambda L: L.losses.MultipleLosses(
        {"a": L.losses.ContrastiveLoss()}, miners={"z": L.miners.MultiSimilarityMiner()}
    ),
    "MultipleLosses miners length": lambda L: L.losses.MultipleLosses(
        [L.losses.ContrastiveLoss(), L.losses.TripletMarginLoss()],
        miners=[L.miners.MultiSimilarityMiner()],
    ),
    "MultipleLosses miners and indices_tuple": lambda L: L.losses.MultipleLosses(
        [L.losses.ContrastiveLoss()], miners=[L.miners.MultiSimilarityMiner()]
    )(EMB, LAB, TRIPLET),
    "PerAnchorReducer triplets": lambda L: L.reducers.PerAnchorReducer()(
        loss_info("triplet"), EMB, LAB
    ),
    "BaseReducer without element_reduction": lambda L: L.reducers.BaseReducer()(
        loss_info("element"), EMB, LAB
    ),
    "MPerClassSampler m * classes < batch_size": lambda L: L.samplers.MPerClassSampler(
        [0] * 10 + [1] * 10 + [2] * 10, m=4, batch_size=16, length_before_new_iter=100
    ),
    "MPerClassSampler batch_size % m": lambda L: L.samplers.MPerClassSampler(
        LABELS_100, m=4, batch_size=10, length_before_new_iter=100
    ),
    "MPerClassSampler length < batch_size": lambda L: L.samplers.MPerClassSampler(
        LABELS_100, m=4, batch_size=8, length_before_new_iter=4
    ),
    "RankedListLoss imbalance > 1": lambda L: L.losses.RankedListLoss(0.4, 0, imbalance=1.5),
    "RankedListLoss imbalance < 0": lambda L: L.losses.RankedListLoss(0.4, 0, imbalance=-0.1),
    "reducer with two sub-losses": lambda L: L.reducers.MeanReducer()(
        {"a": loss_info("element")["loss"], "b": loss_info("element")["loss"]}, EMB, LAB
    ),
    "reducer with wrong index size": lambda L: L.reducers.MeanReducer()(
        loss_info("element", indices=torch.arange(2)), EMB, LAB
    ),
    "reducer with unreduced already_reduced": lambda L: L.reducers.MeanReducer()(
        loss_info("already_reduced", indices=False), EMB, LAB
    ),
    "reducer with a 2-tensor triplet": lambda L: L.reducers.MeanReducer()(
        loss_info("triplet", indices=(torch.arange(3),) * 2), EMB, LAB
    ),
    "reducer with short pair indices": lambda L: L.reducers.MeanReducer()(
        loss_info("pos_pair", indices=(torch.arange(2),) * 2), EMB, LAB
    ),
    "ThresholdReducer without bounds": lambda L: L.reducers.ThresholdReducer(),
    "SoftTripleLoss with a distance": lambda L: L.losses.SoftTripleLoss(
        4, 4, distance=L.distances.LpDistance()
    ),
    "SNRContrastiveLoss with LpDistance": lambda L: L.losses.SignalToNoiseRatioContrastiveLoss(
        distance=L.distances.LpDistance()
    ),
    "AngularLoss with a similarity": lambda L: L.losses.AngularLoss(
        distance=L.distances.CosineSimilarity()
    ),
    "SmoothAPLoss with LpDistance": lambda L: L.losses.SmoothAPLoss(
        distance=L.distances.LpDistance()
    ),
    "LargeMarginSoftmaxLoss with LpDistance": lambda L: L.losses.LargeMarginSoftmaxLoss(
        4, 4, distance=L.distances.LpDistance()
    ),
    "FastAPLoss with a similarity": lambda L: L.losses.FastAPLoss(
        distance=L.distances.CosineSimilarity()
    ),
    "TCMLoss with LpDistance": lambda L: L.losses.ThresholdConsistentMarginLoss(
        distance=L.distances.LpDistance()
    ),
    "InstanceLoss with LpDistance": lambda L: L.losses.InstanceLoss(
        distance=L.distances.LpDistance()
    ),
    "PNPLoss with LpDistance": lambda L: L.losses.PNPLoss(distance=L.distances.LpDistance()),
    "PNPLoss variant": lambda L: L.losses.PNPLoss(variant="unknown"),
    "TupletMarginLoss with LpDistance": lambda L: L.losses.TupletMarginLoss(
        distance=L.distances.LpDistance()
    ),
    "DynamicSoftMarginLoss with a similarity": lambda L: L.losses.DynamicSoftMarginLoss(
        distance=L.distances.CosineSimilarity()
    ),
    "CircleLoss with LpDistance": lambda L: L.losses.CircleLoss(distance=L.distances.LpDistance()),
    "AngularMiner with a similarity": lambda L: L.miners.AngularMiner(
        distance=L.distances.CosineSimilarity()
    ),
    "DistanceWeightedMiner with a similarity": lambda L: L.miners.DistanceWeightedMiner(
        distance=L.distances.CosineSimilarity()
    ),
    "BatchEasyHardMiner strategy": lambda L: L.miners.BatchEasyHardMiner(pos_strategy="zz"),
    "BatchEasyHardMiner two semihard": lambda L: L.miners.BatchEasyHardMiner(
        pos_strategy="semihard", neg_strategy="semihard"
    ),
    "BatchEasyHardMiner semihard and all": lambda L: L.miners.BatchEasyHardMiner(
        pos_strategy="semihard", neg_strategy="all"
    ),
    "SNRDistance inverted": lambda L: L.distances.SNRDistance(is_inverted=True),
    "LpDistance inverted": lambda L: L.distances.LpDistance(is_inverted=True),
    "CosineSimilarity not inverted": lambda L: L.distances.CosineSimilarity(is_inverted=False),
    "CosineSimilarity unnormalized": lambda L: L.distances.CosineSimilarity(
        normalize_embeddings=False
    ),
    "DotProductSimilarity not inverted": lambda L: L.distances.DotProductSimilarity(
        is_inverted=False
    ),
    "distance of 3-D embeddings": lambda L: L.distances.LpDistance()(torch.randn(2, 3, 4)),
    "SparseCentersRegularizer one center": lambda L: L.regularizers.SparseCentersRegularizer(
        num_classes=3, centers_per_class=1
    ),
    "SparseCentersRegularizer with LpDistance": lambda L: L.regularizers.SparseCentersRegularizer(
        num_classes=3, centers_per_class=2, distance=L.distances.LpDistance()
    ),
    "CenterInvariantRegularizer with a similarity": lambda L: (
        L.regularizers.CenterInvariantRegularizer(distance=L.distances.CosineSimilarity())
    ),
    "RegularFaceRegularizer with LpDistance": lambda L: L.regularizers.RegularFaceRegularizer(
        distance=L.distances.LpDistance()
    ),
    "HierarchicalSampler samples_per_class": lambda L: L.samplers.HierarchicalSampler(
        torch.tensor([[0, 0], [1, 1]] * 10),
        batch_size=10,
        samples_per_class=3,
        batches_per_super_tuple=2,
    ),
    "HierarchicalSampler samples_per_class 0": lambda L: L.samplers.HierarchicalSampler(
        torch.tensor([[0, 0], [1, 1]] * 10),
        batch_size=8,
        samples_per_class=0,
        batches_per_super_tuple=2,
    ),
    "FixedSetOfTriplets no triplets": lambda L: L.samplers.FixedSetOfTriplets(
        LABELS_100, num_triplets=0
    ),
    "CrossBatchMemory enqueue_mask length": lambda L: L.losses.CrossBatchMemory(
        L.losses.ContrastiveLoss(), 4, memory_size=20
    )(EMB, LAB, enqueue_mask=torch.ones(3, dtype=torch.bool)),
    "CrossBatchMemory batch larger than memory": lambda L: L.losses.CrossBatchMemory(
        L.losses.ContrastiveLoss(), 4, memory_size=4
    )(EMB, LAB),
    "CrossBatchMemory indices_tuple and enqueue_mask": lambda L: L.losses.CrossBatchMemory(
        L.losses.ContrastiveLoss(), 4, memory_size=20
    )(EMB, LAB, TRIPLET, enqueue_mask=torch.ones(8, dtype=torch.bool)),
    "VICRegLoss with a distance": lambda L: L.losses.VICRegLoss(distance=L.distances.LpDistance()),
    "VICRegLoss with a regularizer": lambda L: L.losses.VICRegLoss(
        embedding_regularizer=L.regularizers.LpRegularizer()
    ),
    "convert_to_pairs of 2 tensors": lambda L: L.lmu.convert_to_pairs((torch.arange(2),) * 2, LAB),
    "convert_to_triplets of 2 tensors": lambda L: L.lmu.convert_to_triplets(
        (torch.arange(2),) * 2, LAB
    ),
    "remove_self_comparisons of 2 tensors": lambda L: L.lmu.remove_self_comparisons(
        (torch.arange(2),) * 2, torch.arange(8), 10
    ),
}


def raised(call, lib):
    try:
        call(lib)
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return error
    return None


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_arguments_raise_what_pml_raises(case):
    theirs = raised(BAD_CALLS[case], PML)
    assert theirs is not None, "PML accepts this: the case no longer tests anything"
    ours = raised(BAD_CALLS[case], OURS)
    assert isinstance(ours, type(theirs)), f"PML raises {type(theirs).__name__}, we {ours!r}"
    assert len(str(ours)) > 20, "our error names the problem and the fix"


# ---------------------------------------------------------------- what PML's examples read

MINERS = [
    "AngularMiner",
    "BatchEasyHardMiner",
    "BatchHardMiner",
    "DistanceWeightedMiner",
    "HDCMiner",
    "MultiSimilarityMiner",
    "PairMarginMiner",
    "TripletMarginMiner",
    "UniformHistogramMiner",
]
OUTPUT_COUNTS = ("num_triplets", "num_pos_pairs", "num_neg_pairs")


@pytest.mark.parametrize("name", MINERS)
def test_miners_set_pml_attributes_without_collect_stats(name):
    embeddings, labels = batch(n=32, num_classes=4)
    ours, theirs = getattr(miners, name)(), getattr(pml_miners, name)()
    torch.manual_seed(0)
    ours(embeddings, labels)
    torch.manual_seed(0)
    theirs(embeddings, labels)
    set_by_pml = {n for n in vars(theirs) if not n.startswith("_")}
    assert set_by_pml <= {n for n in dir(ours) if not n.startswith("_")}
    for count in OUTPUT_COUNTS:
        if count in set_by_pml:
            assert getattr(ours, count) == getattr(theirs, count)


def test_loss_attributes_pml_sets_without_collect_stats():
    embeddings, labels = batch()
    ours, theirs = losses.NPairsLoss(), pml_losses.NPairsLoss()
    ours(embeddings, labels)
    theirs(embeddings, labels)
    assert ours.num_pairs == theirs.num_pairs == 4
    assert losses.FastAPLoss(num_bins=7).num_edges == pml_losses.FastAPLoss(num_bins=7).num_edges
    proxy_labels = losses.ProxyNCALoss(num_classes=5, embedding_size=3).proxy_labels
    assert torch.equal(proxy_labels, pml_losses.ProxyNCALoss(5, 3).proxy_labels)


# ---------------------------------------------------------------- the helpers PML users call


def sampler_draws(lib):
    labels = np.repeat(np.arange(10), 10)
    hierarchy = torch.stack([torch.arange(100) % 10, torch.arange(100) % 2], dim=1)
    return [
        list(lib.MPerClassSampler(labels, m=4, batch_size=20, length_before_new_iter=100)),
        list(lib.MPerClassSampler(labels, m=4, length_before_new_iter=100)),
        list(lib.FixedSetOfTriplets(labels, num_triplets=30)),
        list(lib.HierarchicalSampler(hierarchy, 8, 2, batches_per_super_tuple=2)),
    ]


def test_numpy_random_makes_samplers_reproducible_as_in_pml(monkeypatch):
    def draws(seed, torch_seed):
        monkeypatch.setattr(c_f, "NUMPY_RANDOM", np.random.RandomState(seed))
        torch.manual_seed(torch_seed)  # must not matter, as in PML
        return sampler_draws(samplers)

    assert draws(42, 0) == draws(42, 1)
    assert all(ours != other for ours, other in zip(draws(42, 0), draws(7, 0)))
    # PML's samplers are reproducible the same way (its documented switch).
    monkeypatch.setattr(pml_c_f, "NUMPY_RANDOM", np.random.RandomState(42))
    first = sampler_draws(pml_samplers)
    monkeypatch.setattr(pml_c_f, "NUMPY_RANDOM", np.random.RandomState(42))
    assert sampler_draws(pml_samplers) == first


def test_tuples_to_weights_sampler_draws_from_numpy_random(monkeypatch):
    dataset = torch.utils.data.TensorDataset(torch.randn(40, 5), torch.arange(40) % 4)
    model = torch.nn.Linear(5, 3)

    def draws(seed):
        monkeypatch.setattr(c_f, "NUMPY_RANDOM", np.random.RandomState(seed))
        sampler = samplers.TuplesToWeightsSampler(model, miners.MultiSimilarityMiner(), dataset)
        return list(sampler)

    assert draws(3) == draws(3) != draws(4)


def test_all_triplets_methods_equal_pml():
    for labels, ref_labels in ((batch(n=20)[1], None), (batch(n=7)[1], batch(n=11, seed=1)[1])):
        matches, diffs = pml_lmu.get_matches_and_diffs(labels, ref_labels)
        ours = lmu.get_all_triplets_indices_vectorized_method(matches, diffs)
        theirs = pml_lmu.get_all_triplets_indices_vectorized_method(matches, diffs)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
        ours = lmu.get_all_triplets_indices_loop_method(labels, matches, diffs)
        theirs = pml_lmu.get_all_triplets_indices_loop_method(labels, matches, diffs)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_batch_easy_hard_miner_strategy_names():
    for name in ("HARD", "SEMIHARD", "EASY", "ALL", "all_batch_mining_strategies"):
        assert getattr(miners.BatchEasyHardMiner, name) == getattr(
            pml_miners.BatchEasyHardMiner, name
        )


@pytest.mark.parametrize(
    "name",
    [
        "ArcFaceLoss",
        "CosFaceLoss",
        "SphereFaceLoss",
        "LargeMarginSoftmaxLoss",
        "SubCenterArcFaceLoss",
    ],
)
def test_margin_softmax_losses_record_pml_average_angle(name):
    embeddings, labels = batch(n=16, dim=8, dtype=torch.float32)
    ours = getattr(losses, name)(num_classes=4, embedding_size=8, collect_stats=True)
    theirs = getattr(pml_losses, name)(num_classes=4, embedding_size=8, collect_stats=True)
    with torch.no_grad():
        ours.W.copy_(theirs.W)
    ours(embeddings, labels)
    theirs(embeddings, labels)
    assert "avg_angle" in ours._record_these_stats
    assert ours.avg_angle == pytest.approx(theirs.avg_angle, abs=1e-4)
