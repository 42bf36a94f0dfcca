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


def test_get_all_embeddings_keeps_order_and_model_modes():
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Dropout(0.9))
    trunk.train()
    dataset = two_level_dataset(n=24)
    embeddings, labels = make_tester(normalize_embeddings=False).get_all_embeddings(dataset, trunk)
    x, expected_labels = dataset.tensors
    trunk.eval()
    assert torch.allclose(embeddings, trunk[0](x).detach(), atol=1e-6)  # dropout was off
    trunk.train()
    assert trunk.training  # and the model is back in training mode
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
        == "val_normalized_pca8_trunk_GlobalEmbeddingSpaceTester_level_0_avg_of_avgs"
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
