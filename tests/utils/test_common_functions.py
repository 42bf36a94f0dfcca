import types

import numpy as np
import pytest
import torch

from metric_runner.distances import CosineSimilarity, LpDistance
from metric_runner.utils import common_functions as c_f


def test_collect_stats_switch_reaches_components_built_afterwards(monkeypatch):
    monkeypatch.setattr(c_f, "COLLECT_STATS", True)
    distance = LpDistance()
    distance(torch.tensor([[3.0, 4.0]]))
    assert distance.collect_stats and distance.initial_avg_query_norm == pytest.approx(5.0)
    monkeypatch.setattr(c_f, "COLLECT_STATS", False)
    assert not LpDistance().collect_stats


@pytest.mark.parametrize(
    "embeddings, labels, message",
    [
        (torch.tensor(1.0), None, "must have a batch dimension"),
        (torch.ones(4, 3), torch.ones(4, 1), "labels must be 1D"),
        (
            torch.ones(4, 3),
            torch.arange(3),
            r"Number of embeddings \(4\) must equal number of labels \(3\)",
        ),
    ],
)
def test_check_shapes_errors(embeddings, labels, message):
    with pytest.raises(ValueError, match=message):
        c_f.check_shapes(embeddings, labels)


def test_check_shapes_accepts_good_input_and_missing_labels():
    c_f.check_shapes(torch.ones(4, 3), torch.arange(4))
    c_f.check_shapes(torch.ones(4, 3), None)
    # As in PML, the rows' own shape is left to the distance (a custom one may take N-D rows).
    c_f.check_shapes(torch.ones(4, 3, 2), torch.arange(4))
    c_f.check_shapes(torch.ones(4), torch.arange(4))


def test_set_ref_emb_defaults_to_the_query_batch():
    embeddings, labels = torch.ones(4, 3), torch.arange(4)
    ref_emb, ref_labels = c_f.set_ref_emb(embeddings, labels, None, None)
    assert ref_emb is embeddings and ref_labels is labels


def test_set_ref_emb_returns_the_given_reference():
    ref_emb, ref_labels = c_f.set_ref_emb(
        torch.ones(4, 3), torch.arange(4), torch.zeros(2, 3), torch.tensor([5, 6])
    )
    assert ref_emb.shape == (2, 3) and ref_labels.tolist() == [5, 6]


def test_set_ref_emb_without_labels_allows_missing_ref_labels():
    # loss(embeddings, indices_tuple=pairs, ref_emb=ref_emb) needs no labels at all.
    ref_emb, ref_labels = c_f.set_ref_emb(torch.ones(4, 3), None, torch.zeros(2, 3), None)
    assert ref_emb.shape == (2, 3) and ref_labels is None


@pytest.mark.parametrize(
    "ref_emb, ref_labels, message",
    [
        (torch.zeros(2, 3), None, "ref_labels must be given with ref_emb"),
        (torch.zeros(2, 3), torch.arange(3), "must equal number of labels"),
        (
            torch.zeros(2, 5),
            torch.arange(2),
            r"ref_emb rows have shape \(5,\) but embeddings rows have \(3,\)",
        ),
        (torch.zeros(2), torch.arange(2), r"ref_emb rows have shape \(\) but"),
    ],
)
def test_set_ref_emb_errors(ref_emb, ref_labels, message):
    with pytest.raises(ValueError, match=message):
        c_f.set_ref_emb(torch.ones(4, 3), torch.arange(4), ref_emb, ref_labels)


def test_labels_or_indices_tuple_required():
    c_f.labels_or_indices_tuple_required(torch.arange(3), None)
    c_f.labels_or_indices_tuple_required(None, (torch.arange(2),) * 3)
    with pytest.raises(ValueError, match="cannot both be None"):
        c_f.labels_or_indices_tuple_required(None, None)


class HasDistance:
    def __init__(self, distance):
        self.distance = distance


def test_assert_distance_type_accepts_matching_distances():
    c_f.assert_distance_type(HasDistance(LpDistance(power=2)), LpDistance, power=2)
    c_f.assert_distance_type(HasDistance(CosineSimilarity()), (LpDistance, CosineSimilarity))
    c_f.assert_distance_type(HasDistance(CosineSimilarity()), is_inverted=True)


@pytest.mark.parametrize(
    "distance, distance_type, attributes, message",
    [
        (
            LpDistance(),
            CosineSimilarity,
            {},
            r"HasDistance needs CosineSimilarity\(\), got LpDistance",
        ),
        (
            LpDistance(),
            LpDistance,
            {"power": 2},
            r"needs LpDistance\(power=2\), got LpDistance\(.*power=1",
        ),
        (LpDistance(), None, {"is_inverted": True}, "needs a distance with is_inverted=True"),
        (LpDistance(), (CosineSimilarity,), {}, r"needs CosineSimilarity\(\)"),
    ],
)
def test_assert_distance_type_errors_name_what_is_needed(
    distance, distance_type, attributes, message
):
    with pytest.raises(ValueError, match=message):
        c_f.assert_distance_type(HasDistance(distance), distance_type, **attributes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_dtype_constants(dtype):
    assert c_f.neg_inf(dtype) == torch.finfo(dtype).min
    assert c_f.pos_inf(dtype) == torch.finfo(dtype).max
    assert 0 < c_f.small_val(dtype) == torch.finfo(dtype).tiny
    # The constants are finite so that masked entries never produce inf - inf = nan.
    assert torch.isfinite(torch.tensor([c_f.neg_inf(dtype), c_f.pos_inf(dtype)], dtype=dtype)).all()


def test_to_device_and_dtype():
    x = torch.arange(3)
    moved = c_f.to_device(x, tensor=torch.ones(1, dtype=torch.float64), dtype=torch.float64)
    assert moved.dtype == torch.float64
    pair = c_f.to_device((x, x), device=torch.device("cpu"))
    assert isinstance(pair, tuple) and len(pair) == 2
    assert c_f.to_dtype(x, tensor=torch.ones(1, dtype=torch.float16)).dtype == torch.float16
    assert c_f.to_dtype(x, dtype=torch.float32).dtype == torch.float32


def test_small_conversions():
    assert c_f.torch_arange_from_size(torch.ones(2, 5), size_dim=1).tolist() == [0, 1, 2, 3, 4]
    assert torch.is_tensor(c_f.numpy_to_torch(np.ones(2)))
    assert isinstance(c_f.to_numpy(torch.ones(2, requires_grad=True)), np.ndarray)
    # A list of per-level label tensors becomes one (N, levels) array.
    assert c_f.to_numpy([torch.zeros(3), torch.ones(3)]).shape == (3, 2)
    assert (
        c_f.is_list_or_tuple([1])
        and c_f.is_list_or_tuple((1,))
        and not c_f.is_list_or_tuple(torch.ones(1))
    )


def test_set_logger_name(monkeypatch):
    monkeypatch.setattr(c_f, "LOGGER_NAME", c_f.LOGGER_NAME)
    monkeypatch.setattr(c_f, "LOGGER", c_f.LOGGER)
    c_f.set_logger_name("my_experiment")
    assert c_f.LOGGER_NAME == "my_experiment" and c_f.LOGGER.name == "my_experiment"


def test_torch_init_wrapper_binds_arguments():
    from metric_runner.losses import ArcFaceLoss

    init = c_f.TorchInitWrapper(torch.nn.init.constant_, val=0.25)
    loss_fn = ArcFaceLoss(num_classes=3, embedding_size=2, weight_init_func=init)
    torch.testing.assert_close(loss_fn.W.detach(), torch.full((2, 3), 0.25))


def test_assert_distance_type_error_is_also_an_assertion_error():
    # PML asserts the distance type; code catching AssertionError keeps working.
    with pytest.raises(AssertionError, match="needs CosineSimilarity"):
        c_f.assert_distance_type(HasDistance(LpDistance()), CosineSimilarity)


# ---------------------------------------------------------------- PML's helpers, against PML


@pytest.fixture
def pml_c_f(pml):
    from pytorch_metric_learning.utils import common_functions

    return common_functions


@pytest.mark.parametrize(
    "labels",
    [torch.tensor([3, 0, 3, 2, 0, 3]), [5, 1, 5], np.array([1.5, -2.0, 1.5])],
    ids=["tensor", "list", "float_array"],
)
def test_get_labels_to_indices_matches_pml(pml_c_f, labels):
    ours, theirs = c_f.get_labels_to_indices(labels), pml_c_f.get_labels_to_indices(labels)
    assert list(ours) == list(theirs)  # labels in order of first appearance
    for label, indices in theirs.items():
        np.testing.assert_array_equal(ours[label], indices)
        assert ours[label].dtype == indices.dtype
    assert ours["absent"] == []  # a defaultdict(list), as PML's


def test_label_mapping_matches_pml(pml_c_f):
    dataset_labels = np.array([[30, 1], [50, 2], [70, 2], [30, 9]])
    ours = c_f.LabelMapper(set_min_label_to_zero=True, dataset_labels=dataset_labels)
    theirs = pml_c_f.LabelMapper(set_min_label_to_zero=True, dataset_labels=dataset_labels)
    assert ours.label_map == theirs.label_map
    batch = torch.tensor([[70, 9], [30, 1], [50, 2]])
    for level in (0, 1, "all"):
        expected = pml_c_f.process_label(batch, level, theirs.map)
        assert torch.equal(c_f.process_label(batch, level, ours.map), expected)
    identity = c_f.LabelMapper()
    assert torch.equal(c_f.process_label(batch, 1, identity.map), batch[:, 1])
    assert c_f.get_label_map(dataset_labels) == pml_c_f.get_label_map(dataset_labels)
    assert c_f.make_label_to_rank_dict([5, 3, 9]) == {5: 1, 3: 0, 9: 2}
    for level in (0, 1, "all"):
        np.testing.assert_array_equal(
            c_f.get_hierarchy_label(dataset_labels, level),
            pml_c_f.get_hierarchy_label(dataset_labels, level),
        )


def test_numpy_random_drives_safe_random_choice_as_in_pml(pml_c_f, monkeypatch):
    for module in (c_f, pml_c_f):
        monkeypatch.setattr(module, "NUMPY_RANDOM", np.random.RandomState(42))
    for data, size in [(np.arange(10), 4), (np.arange(3), 7), (torch.arange(5), 5)]:
        ours, theirs = c_f.safe_random_choice(data, size), pml_c_f.safe_random_choice(data, size)
        np.testing.assert_array_equal(ours, theirs)
    # without replacement whenever there are enough elements
    assert len(set(c_f.safe_random_choice(np.arange(10), 10).tolist())) == 10


def test_small_helpers_match_pml(pml_c_f):
    x = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(c_f.torch_standard_scaler(x), pml_c_f.torch_standard_scaler(x))
    scaled = c_f.torch_standard_scaler(x)
    torch.testing.assert_close(scaled.mean(0), torch.zeros(3, dtype=torch.float64))
    flags = torch.rand(2, 3, 4) > 0.2
    assert torch.equal(
        c_f.torch_all_from_dim_to_end(flags, 1), pml_c_f.torch_all_from_dim_to_end(flags, 1)
    )
    triplets = (torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([2, 3]))
    pairs = (*triplets, torch.tensor([4, 5]))
    for tuple_ in (triplets, pairs):
        for ours, theirs in zip(
            c_f.shift_indices_tuple(tuple_, 10), pml_c_f.shift_indices_tuple(tuple_, 10)
        ):
            assert torch.equal(ours, theirs)
    for ours, theirs in zip(
        c_f.concatenate_indices_tuples(triplets, triplets),
        pml_c_f.concatenate_indices_tuples(triplets, triplets),
    ):
        assert torch.equal(ours, theirs)
    slices = [torch.tensor([[0.0, 0], [2, 2]]), torch.tensor([[1.0, 1], [3, 3]])]
    assert torch.equal(c_f.unslice_by_n(slices), pml_c_f.unslice_by_n(slices))
    assert c_f.exclude(["a", "b", "c"], ["b"]) == ["a", "c"]
    assert c_f.append_map(["a", "b"], "_x") == ["a_x", "b_x"]
    assert c_f.regex_wrapper(["a.", "b"])[0].pattern == "a." and c_f.regex_wrapper("a").match("a")
    assert c_f.regex_replace("a", "b", "xax") == "xbx"
    rows = [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert c_f.sqlite_obj_to_dict(rows) == pml_c_f.sqlite_obj_to_dict(rows)
    assert c_f.list_of_recordable_attributes_list_names() == (
        pml_c_f.list_of_recordable_attributes_list_names()
    )
    assert c_f.modelpath_creator("f", "trunk", 5) == pml_c_f.modelpath_creator("f", "trunk", 5)
    assert c_f.modelpath_creator("f", "trunk", None) == "f/trunk.pth"
    assert c_f.return_input(3) == 3 and c_f.use_cuda_if_available() == (
        pml_c_f.use_cuda_if_available()
    )


def test_generator_and_dataset_helpers(pml_c_f):
    gen, item = c_f.try_next_on_generator(iter([]), [5, 6])
    assert item == 5 and next(gen) == 6
    gen, item = c_f.try_next_on_generator(iter([1]), [5, 6])
    assert item == 1
    dataset = c_f.EmbeddingDataset(torch.arange(6.0).view(3, 2), torch.tensor([7, 8, 9]))
    assert len(dataset) == 3
    embedding, label = dataset[1]
    assert embedding.tolist() == [2.0, 3.0] and label == 8
    loader = c_f.get_train_dataloader(dataset, 2, None, 0, None)
    assert loader.drop_last and len(loader) == 1
    eval_loader = c_f.get_eval_dataloader(dataset, 2, 0, None)
    assert [labels.tolist() for _, labels in eval_loader] == [[7, 8], [9]]


def test_recordable_attributes_match_pml(pml_c_f):
    recorded = []
    for module in (c_f, pml_c_f):
        obj = types.SimpleNamespace(kept=7)
        module.add_to_recordable_attributes(obj, name="kept")
        module.add_to_recordable_attributes(obj, list_of_names=["fresh", "stat"], is_stat=True)
        obj.stat = 5
        module.reset_stats(obj)
        recorded.append(vars(obj))
    assert recorded[0] == recorded[1]
    assert recorded[0]["kept"] == 7 and recorded[0]["stat"] == 0


def test_input_checks_raise_like_pml(pml_c_f):
    e, labels = torch.zeros(3, 2), torch.tensor([0, 1, 2])
    c_f.ref_not_supported(e, labels, e, labels)
    c_f.labels_not_supported(None, None)
    c_f.indices_tuple_not_supported(None)
    for check, args in [
        ("labels_required", (None,)),
        ("labels_not_supported", (labels, None)),
        ("ref_not_supported", (e, labels, e + 1, labels)),
        ("indices_tuple_not_supported", ((labels,) * 3,)),
    ]:
        with pytest.raises(ValueError):
            getattr(pml_c_f, check)(*args)
        with pytest.raises(ValueError, match="this loss function"):
            getattr(c_f, check)(*args)


def test_models_are_saved_loaded_and_found_as_pml_names_them(tmp_path, caplog):
    models = {
        "trunk": torch.nn.DataParallel(torch.nn.Linear(2, 2)),
        "embedder": torch.nn.Linear(2, 1),
    }
    with caplog.at_level("INFO", logger=c_f.LOGGER.name):
        c_f.save_dict_of_models(models, 4, tmp_path, log_if_successful=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedder_4.pth", "trunk_4.pth"]
    assert f"SAVE {tmp_path / 'trunk_4.pth'}" in caplog.messages
    # saved without DataParallel's "module." prefix, loadable into a bare or wrapped model
    assert list(torch.load(tmp_path / "trunk_4.pth")) == ["weight", "bias"]
    bare = {"trunk": torch.nn.Linear(2, 2)}
    c_f.load_dict_of_models(bare, 4, tmp_path, "cpu")
    assert torch.equal(bare["trunk"].weight, models["trunk"].module.weight)
    wrapped = {"trunk": torch.nn.DataParallel(torch.nn.Linear(2, 2))}
    c_f.load_dict_of_models(wrapped, 4, tmp_path, "cpu", assert_success=True)
    assert torch.equal(wrapped["trunk"].module.weight, models["trunk"].module.weight)
    with pytest.raises(OSError, match="Could not LOAD"):
        c_f.load_dict_of_models(bare, 9, tmp_path, "cpu", assert_success=True)
    c_f.load_dict_of_models(bare, 9, tmp_path, "cpu")  # only a warning
    (tmp_path / "trunk_12.pth").touch()
    (tmp_path / "trunk_best7.pth").touch()
    assert c_f.latest_version(tmp_path, "trunk_*.pth") == (12, 12)
    assert c_f.latest_version(tmp_path, "trunk_*.pth", best=True) == (7, "best7")
    assert c_f.latest_version(tmp_path / "absent") == (0, None)
    c_f.delete_dict_of_models(models, 4, tmp_path)
    assert not (tmp_path / "trunk_4.pth").exists()


def test_layer_and_grad_switches():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 2))
    model.apply(c_f.set_layers_to_eval("BatchNorm"))
    assert not model[0].training and model[1].training
    c_f.set_requires_grad(model, False)
    assert not any(p.requires_grad for p in model.parameters())
