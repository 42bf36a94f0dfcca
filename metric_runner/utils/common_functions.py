"""Small helpers shared by every component: dtype-aware constants, device moves, shape checks."""

import logging

import numpy as np
import torch

LOGGER_NAME = "metric_runner"
LOGGER = logging.getLogger(LOGGER_NAME)

# When True, every part built afterwards records its statistics (num_pos_pairs, ...).
COLLECT_STATS = False


def set_logger_name(name):
    global LOGGER_NAME, LOGGER
    LOGGER_NAME = name
    LOGGER = logging.getLogger(name)


def neg_inf(dtype):
    return torch.finfo(dtype).min


def pos_inf(dtype):
    return torch.finfo(dtype).max


def small_val(dtype):
    return torch.finfo(dtype).tiny


def is_list_or_tuple(x):
    return isinstance(x, (list, tuple))


def to_device(x, tensor=None, device=None, dtype=None):
    """Move a tensor (or list of tensors) to the device (and dtype) of `tensor` or to `device`."""
    if is_list_or_tuple(x):
        return type(x)(to_device(y, tensor=tensor, device=device, dtype=dtype) for y in x)
    device = tensor.device if device is None else device
    if x.device != device:
        x = x.to(device)
    if dtype is not None:
        x = to_dtype(x, dtype=dtype)
    return x


def to_dtype(x, tensor=None, dtype=None):
    if not torch.is_autocast_enabled():
        dtype = tensor.dtype if tensor is not None else dtype
        if x.dtype != dtype:
            x = x.type(dtype)
    return x


def torch_arange_from_size(x, size_dim=0):
    return torch.arange(x.size(size_dim), device=x.device)


def numpy_to_torch(x):
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


def to_numpy(x):
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    if is_list_or_tuple(x):
        return np.stack([to_numpy(y) for y in x], axis=1)
    return x


def check_shapes(embeddings, labels):
    """Validate the (embeddings, labels) pair every loss and miner receives."""
    if embeddings.ndim != 2:
        raise ValueError(
            f"embeddings must be 2D (batch_size, embedding_size), got shape {tuple(embeddings.shape)}; "
            "flatten or pool your model's output first."
        )
    if labels is None:
        return
    if labels.ndim != 1:
        raise ValueError(
            f"labels must be 1D (batch_size,), got shape {tuple(labels.shape)}; "
            "for multi-level labels pass one level at a time."
        )
    if embeddings.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Number of embeddings ({embeddings.shape[0]}) must equal number of labels "
            f"({labels.shape[0]}): pass one label per embedding row."
        )


def set_ref_emb(embeddings, labels, ref_emb, ref_labels):
    """Return (ref_emb, ref_labels), defaulting to the query batch itself.

    ref_labels may be omitted only when labels are too (tuples then come from indices_tuple).
    """
    if ref_emb is None:
        return embeddings, labels
    if ref_labels is None and labels is not None:
        raise ValueError(
            "ref_labels must be given with ref_emb when labels are given: "
            "pass one label per ref_emb row."
        )
    check_shapes(ref_emb, ref_labels)
    if ref_emb.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"ref_emb has embedding size {ref_emb.shape[1]} but embeddings have "
            f"{embeddings.shape[1]}; both must come from the same embedder."
        )
    if ref_labels is not None:
        ref_labels = to_device(ref_labels, embeddings)
    return ref_emb, ref_labels


def labels_or_indices_tuple_required(labels, indices_tuple):
    if labels is None and indices_tuple is None:
        raise ValueError("labels and indices_tuple cannot both be None: pass at least one.")


def assert_distance_type(obj, distance_type=None, **attributes):
    """Raise a ValueError unless `obj.distance` is a `distance_type` (a class or a tuple of
    classes) whose attributes equal `attributes` (e.g. power=1): for losses and regularizers
    whose formula only holds for one kind of distance."""
    distance = obj.distance
    matches_type = distance_type is None or isinstance(distance, distance_type)
    if matches_type and all(getattr(distance, k, None) == v for k, v in attributes.items()):
        return
    needed_args = ", ".join(f"{k}={v!r}" for k, v in attributes.items())
    if distance_type is None:
        needed = f"a distance with {needed_args}"
    else:
        types = distance_type if isinstance(distance_type, tuple) else (distance_type,)
        needed = " or ".join(f"{t.__name__}({needed_args})" for t in types)
    shown = dict.fromkeys(["normalize_embeddings", "p", "power", *attributes])
    got_args = ", ".join(f"{k}={getattr(distance, k, None)!r}" for k in shown)
    raise ValueError(
        f"{type(obj).__name__} needs {needed}, got {type(distance).__name__}({got_args}); "
        "pass a distance of that kind."
    )


class TorchInitWrapper:
    """Binds keyword arguments to a torch.nn.init function, for `weight_init_func=`:
    TorchInitWrapper(torch.nn.init.normal_, std=0.01)."""

    def __init__(self, init_func, **kwargs):
        self.init_func = init_func
        self.kwargs = kwargs

    def __call__(self, tensor):
        self.init_func(tensor, **self.kwargs)
