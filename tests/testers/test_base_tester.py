import copy

import numpy as np
import pytest
import torch

from metric_runner.testers import BaseTester, GlobalEmbeddingSpaceTester
from metric_runner.testers.base_tester import principal_components
from metric_runner.utils.accuracy_calculator import AccuracyCalculator
from tests.testers.helpers import embed, models, one_level_dataset, two_level_dataset


def make_tester(**kwargs):
    return GlobalEmbeddingSpaceTester(
        dataloader_num_workers=0, data_device="cpu", batch_size=5, **kwargs
    )


def test_get_all_embeddings_keeps_order_and_evaluates_in_eval_mode():
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Dropout(0.9))
    trunk.train()
    dataset = two_level_dataset(n=24)
    embeddings, labels = make_tester(normalize_embeddings=False).get_all_embeddings(dataset, trunk)
    x, expected_labels = dataset.tensors
    assert not trunk.training  # left in eval mode, as PML's tester leaves it
    assert torch.allclose(embeddings, trunk[0](x).detach(), atol=1e-6)  # dropout was off
    assert torch.equal(labels, expected_labels)
    as_numpy = make_tester(normalize_embeddings=False).get_all_embeddings(
        dataset, trunk, return_as_numpy=True
    )
    assert isinstance(as_numpy[0], np.ndarray) and as_numpy[1].shape == (24, 2)


def test_data_and_label_getter_and_string_labels_mapped_to_ranks():
    class DictDataset(torch.utils.data.Dataset):
        names = ["dog", "cat", "monkey", "cat", "dog", "dog"]

        def __len__(self):
            return len(self.names)

        def __getitem__(self, i):
            return {"image": torch.full((6,), float(i)), "name": self.names[i]}

    t = make_tester(
        data_and_label_getter=lambda batch: (batch["image"], batch["name"]),
        set_min_label_to_zero=True,
        dataset_labels=DictDataset.names,
    )
    trunk, _ = models()
    embeddings, labels = t.get_all_embeddings(DictDataset(), trunk)
    # sorted labels: cat=0, dog=1, monkey=2
    assert labels[:, 0].tolist() == [1, 0, 2, 0, 1, 1]
    assert torch.allclose(
        embeddings, embed(torch.arange(6.0).unsqueeze(1).repeat(1, 6), trunk), atol=1e-6
    )
    with pytest.raises(ValueError, match="set_min_label_to_zero=True needs dataset_labels"):
        make_tester(set_min_label_to_zero=True)


def test_pca_projects_the_standardized_embeddings_on_their_top_principal_components():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor(
        [5.0, 3.0, 1.0, 0.5, 0.1]
    )
    x[:, 2] += 0.8 * x[:, 0]  # correlated, so the standardized data has a leading direction
    projected = principal_components(x, 2)
    data = x.numpy().astype(np.float64)
    standardized = (data - data.mean(0)) / data.std(0, ddof=1)
    _, _, vt = np.linalg.svd(standardized, full_matrices=False)
    expected = standardized @ vt[:2].T
    np.testing.assert_allclose(np.abs(projected.numpy()), np.abs(expected), rtol=1e-4, atol=1e-4)
    constant = torch.cat([x, torch.full((200, 1), 3.0)], dim=1)
    assert torch.isfinite(principal_components(constant, 2)).all()
    trunk, embedder = models()
    embeddings, _ = make_tester(pca=2).get_all_embeddings(one_level_dataset(), trunk, embedder)
    assert embeddings.shape == (36, 2)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(36))


@pytest.mark.parametrize("normalize", [False, True])
def test_pca_matches_pml_up_to_the_sign_of_each_component(pml, normalize):
    import pytorch_metric_learning.testers as pml_testers

    x = torch.randn(60, 5, generator=torch.Generator().manual_seed(1)) * torch.tensor(
        [5.0, 3.0, 1.0, 0.5, 0.1]
    )
    x[:, 1] += 0.5 * x[:, 0]
    dataset = torch.utils.data.TensorDataset(x, torch.arange(60) % 4)
    arguments = dict(
        dataloader_num_workers=0,
        data_device="cpu",
        batch_size=7,
        pca=3,
        normalize_embeddings=normalize,
    )
    ours, _ = GlobalEmbeddingSpaceTester(**arguments).get_all_embeddings(
        dataset, torch.nn.Identity()
    )
    theirs, _ = pml_testers.GlobalEmbeddingSpaceTester(**arguments).get_all_embeddings(
        dataset, torch.nn.Identity()
    )
    torch.testing.assert_close(ours.abs(), theirs.abs(), rtol=1e-4, atol=1e-4)


def test_visualizer_hook_receives_each_split_and_level():
    calls = []

    class FirstTwoColumns:
        def fit_transform(self, x):
            return x[:, :2]

    trunk, embedder = models()
    t = make_tester(
        accuracy_calculator=AccuracyCalculator(include=("precision_at_1",)),
        label_hierarchy_level="all",
        visualizer=FirstTwoColumns(),
        visualizer_hook=lambda *args: calls.append(args),
    )
    dataset = two_level_dataset()
    t.test({"val": dataset}, 7, trunk, embedder)
    assert [(c[3], c[4], c[5]) for c in calls] == [
        ("val", "FirstTwoColumns_level0", 7),
        ("val", "FirstTwoColumns_level1", 7),
    ]
    x, labels = dataset.tensors
    np.testing.assert_allclose(calls[0][1], embed(x, trunk, embedder)[:, :2].numpy(), atol=1e-6)
    assert np.array_equal(calls[1][2], labels[:, 1].numpy())


def test_description_suffixes_and_keynames():
    t = make_tester(
        pca=8, use_trunk_output=True, accuracy_calculator=AccuracyCalculator(avg_of_avgs=True)
    )
    assert (
        t.description_suffixes("val")
        == "val_pca8_normalized_trunk_GlobalEmbeddingSpaceTester_level_0_avg_of_avgs"
    )
    assert t.accuracies_keyname("r_precision", 2) == "r_precision_level2"
    assert t.accuracies_keyname("r_precision", average=True) == "AVERAGE_r_precision"


def test_base_tester_needs_a_search_strategy():
    trunk, embedder = models()
    with pytest.raises(NotImplementedError, match="must define do_knn_and_accuracies"):
        BaseTester(dataloader_num_workers=0, data_device="cpu").test(
            {"a": one_level_dataset()}, 0, trunk, embedder
        )


def test_visualizer_hook_gets_the_arguments_pmls_tester_gives(pml):
    pytest.importorskip("faiss")
    from pytorch_metric_learning.testers import GlobalEmbeddingSpaceTester as PMLTester
    from pytorch_metric_learning.utils.accuracy_calculator import (
        AccuracyCalculator as PMLCalculator,
    )

    class FirstTwoColumns:
        def fit_transform(self, x):
            return x[:, :2]

    trunk, embedder = models()
    splits = {"a": two_level_dataset(seed=1), "b": two_level_dataset(seed=2)}
    calls = {"ours": [], "pml": []}
    for name, tester_class, calculator_class in [
        ("ours", GlobalEmbeddingSpaceTester, AccuracyCalculator),
        ("pml", PMLTester, PMLCalculator),
    ]:
        tester_class(
            dataloader_num_workers=0,
            data_device="cpu",
            batch_size=7,
            label_hierarchy_level="all",
            accuracy_calculator=calculator_class(include=("precision_at_1",)),
            visualizer=FirstTwoColumns(),
            visualizer_hook=lambda *args, calls=calls[name], **kwargs: calls.append((args, kwargs)),
        ).test(splits, 5, trunk, embedder)
    assert len(calls["ours"]) == len(calls["pml"]) == 4  # 2 splits x 2 label levels
    # PML's order of splits varies between processes (string hashing), so compare by split.
    calls = {name: sorted(c, key=lambda call: call[0][3:5]) for name, c in calls.items()}
    for (ours, our_kwargs), (theirs, their_kwargs) in zip(calls["ours"], calls["pml"]):
        assert our_kwargs == their_kwargs == {}
        assert type(ours[0]) is type(theirs[0]) is FirstTwoColumns
        np.testing.assert_allclose(ours[1], theirs[1], atol=1e-6)  # the 2-D points
        assert np.array_equal(ours[2], theirs[2])  # that level's labels
        assert ours[3:] == theirs[3:]  # split name, keyname "FirstTwoColumns_level<L>", epoch


@pytest.mark.parametrize(
    "settings",
    [
        {"pca": 3},
        {"pca": 8, "use_trunk_output": True},
        {"normalize_embeddings": False},
        {"pca": 2, "normalize_embeddings": False, "use_trunk_output": True},
    ],
)
def test_description_suffixes_match_pmls(pml, settings):
    from pytorch_metric_learning.testers import GlobalEmbeddingSpaceTester as PMLTester

    ours = make_tester(**settings).description_suffixes("accuracies")
    assert ours == PMLTester(**settings).description_suffixes("accuracies")


def test_test_records_the_reference_splits_of_each_query_split_query_first():
    trunk, embedder = models()
    splits = {"train": one_level_dataset(), "val": one_level_dataset()}
    tester = make_tester()
    tester.test(splits, 0, trunk, embedder, splits_to_eval=[("val", ["train", "val"])])
    assert tester.reference_split_names == {"val": ["val", "train"]}
    tester.test(splits, 0, trunk, embedder)
    assert tester.reference_split_names == {"train": ["train"], "val": ["val"]}


def pml_tester(pml, **kwargs):
    return pml.testers.GlobalEmbeddingSpaceTester(
        dataloader_num_workers=0, data_device="cpu", batch_size=5, **kwargs
    )


def dropout_models():
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Dropout(0.5))
    return trunk, torch.nn.Linear(5, 3)


@pytest.mark.parametrize("eval", [True, False])
def test_get_all_embeddings_leaves_the_models_in_the_mode_pmls_does(pml, eval):
    modes = {}
    for name, tester in [("ours", make_tester()), ("pml", pml_tester(pml))]:
        trunk, embedder = dropout_models()
        tester.get_all_embeddings(one_level_dataset(), trunk, embedder, eval=eval)
        modes[name] = (trunk.training, embedder.training)
    assert modes["ours"] == modes["pml"] == (not eval, not eval)


def offset_two_level_dataset():
    """Labels that do not start at 0, so set_min_label_to_zero changes them."""
    x, labels = two_level_dataset(n=24).tensors
    return torch.utils.data.TensorDataset(x, labels * 3 + 7)


def test_compute_all_embeddings_matches_pml_raw_and_without_changing_modes(pml):
    # pca and normalization belong to get_all_embeddings: compute_all_embeddings is raw.
    settings = dict(pca=2, set_min_label_to_zero=True, label_hierarchy_level="all")
    dataset = offset_two_level_dataset()
    settings["dataset_labels"] = dataset.tensors[1].numpy()
    results = {}
    for name, tester in [("ours", make_tester(**settings)), ("pml", pml_tester(pml, **settings))]:
        trunk, embedder = dropout_models()
        trunk.eval()
        loader = torch.utils.data.DataLoader(dataset, batch_size=5)
        results[name] = tester.compute_all_embeddings(loader, trunk, embedder)
        assert not trunk.training and embedder.training  # modes untouched
    (ours, our_labels), (theirs, their_labels) = results["ours"], results["pml"]
    assert ours.shape == theirs.shape == (24, 3)
    torch.testing.assert_close(ours, theirs)
    assert torch.equal(our_labels, their_labels)
    assert our_labels.min() == 0 and our_labels[:, 1].max() == 2  # mapped to ranks


@pytest.mark.parametrize(
    "splits_to_eval",
    [
        None,
        [("b", ["a", "b", "c"])],
        [("b", ["c", "a"])],
        [("a", ["a"]), ("c", ["b", "c"])],
    ],
)
def test_get_splits_to_compute_embeddings_matches_pml(pml, splits_to_eval):
    splits = {name: one_level_dataset() for name in "abc"}
    ours = make_tester().get_splits_to_compute_embeddings(splits, copy.deepcopy(splits_to_eval))
    theirs = pml_tester(pml).get_splits_to_compute_embeddings(splits, copy.deepcopy(splits_to_eval))
    assert ours[0] == theirs[0]  # each query split first among its references
    assert sorted(ours[1]) == sorted(theirs[1])  # PML's order follows string hashing
    assert len(ours[1]) == len(set(ours[1]))


def test_get_all_embeddings_for_all_splits_and_maybe_combine_splits_match_pml(pml):
    splits = {"a": two_level_dataset(n=24, seed=1), "b": two_level_dataset(n=18, seed=2)}
    settings = dict(normalize_embeddings=False, label_hierarchy_level=1)
    combined = {}
    for name, tester in [("ours", make_tester(**settings)), ("pml", pml_tester(pml, **settings))]:
        trunk, embedder = dropout_models()
        per_split = tester.get_all_embeddings_for_all_splits(
            splits, trunk, embedder, ["b", "a"], None
        )
        assert sorted(per_split) == ["a", "b"]
        assert not trunk.training and not embedder.training
        combined[name] = per_split, tester.maybe_combine_splits(per_split, ["b", "a"])
    (ours, our_combined), (theirs, their_combined) = combined["ours"], combined["pml"]
    for split in "ab":
        torch.testing.assert_close(ours[split][0], theirs[split][0])
        assert torch.equal(ours[split][1], theirs[split][1])
    assert our_combined[0].shape == (42, 3)
    for our_part, their_part in zip(our_combined, their_combined, strict=True):
        torch.testing.assert_close(our_part, their_part)
    torch.testing.assert_close(our_combined[0][:18], ours["b"][0])  # in the order asked


def test_calculate_average_accuracies_matches_pml(pml):
    accuracies = {
        f"{metric}_level{level}": value
        for metric, values in {
            "precision_at_1": [0.5, 0.25, 0.9],
            "r_precision": [1, 0, 0.2],
        }.items()
        for level, value in enumerate(values)
    }
    ours, theirs = dict(accuracies), dict(accuracies)
    metrics, levels = ["precision_at_1", "r_precision"], [0, 2]
    assert make_tester().calculate_average_accuracies(ours, metrics, levels) is None
    assert pml_tester(pml).calculate_average_accuracies(theirs, metrics, levels) is None
    assert ours == pytest.approx(theirs)
    assert ours["AVERAGE_precision_at_1"] == pytest.approx(0.7)  # levels 0 and 2 only
    assert ours["AVERAGE_r_precision"] == pytest.approx(0.6)


def test_initialize_accuracy_calculator_and_label_mapper_match_pml(pml):
    dataset = offset_two_level_dataset()
    labels = {}
    for name, tester in [("ours", make_tester()), ("pml", pml_tester(pml))]:
        tester.accuracy_calculator = None
        assert tester.initialize_accuracy_calculator() is None
        assert type(tester.accuracy_calculator).__name__ == "AccuracyCalculator"
        # Asked for after construction: the mapper follows the new settings.
        tester.set_min_label_to_zero, tester.dataset_labels = True, dataset.tensors[1].numpy()
        assert tester.initialize_label_mapper() is None
        labels[name] = tester.get_all_embeddings(dataset, *models())[1]
    assert torch.equal(labels["ours"], labels["pml"])
    assert labels["ours"][:, 0].tolist() == (dataset.tensors[1][:, 0] - 7).div(3).long().tolist()


def test_visualizer_hook_calls_the_users_hook_as_pmls_does(pml):
    for tester_factory in (make_tester, lambda **kw: pml_tester(pml, **kw)):
        calls = []

        def hook(*args, calls=calls, **kwargs):
            calls.append((args, kwargs))

        tester = tester_factory(visualizer_hook=hook)
        assert tester.original_visualizer_hook is hook
        assert tester.reference_split_names == {}  # before any test()
        assert tester.visualizer_hook("umap", [1], split_name="val") is None
        assert calls == [(("umap", [1]), {"split_name": "val"})]
        assert tester_factory().visualizer_hook(1, 2) is None  # no hook: nothing to call
