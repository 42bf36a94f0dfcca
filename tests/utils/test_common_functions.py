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
        (torch.ones(4), torch.arange(4), "embeddings must be 2D"),
        (torch.ones(4, 3, 2), torch.arange(4), "embeddings must be 2D"),
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
        (torch.zeros(2, 5), torch.arange(2), "ref_emb has embedding size 5 but embeddings have 3"),
        (torch.zeros(2), torch.arange(2), "embeddings must be 2D"),
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
