"""Small helpers shared by every component (dtype-aware constants, device moves, shape checks)
and the helpers PML's users call: labels-to-indices maps, label mapping for hierarchical labels,
model saving/loading by name, dataloader builders."""

import collections
import glob
import logging
import os
import re

import numpy as np
import torch

from .errors import InvalidArgumentError

LOGGER_NAME = "metric_runner"
LOGGER = logging.getLogger(LOGGER_NAME)

# When True, every part built afterwards records its statistics (num_pos_pairs, ...).
COLLECT_STATS = False

# The numpy generator every sampler and miner draws from, read at call time, so that
# `c_f.NUMPY_RANDOM = np.random.RandomState(42)` makes them reproducible (PML's documented switch).
NUMPY_RANDOM = np.random


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
    if is_list_or_tuple(x) and x and all(torch.is_tensor(y) for y in x):
        return np.stack([to_numpy(y) for y in x], axis=1)
    return x


def check_shapes(embeddings, labels):
    """Validate the (embeddings, labels) pair every loss and miner receives. The embeddings'
    own shape is the distance's to check (a custom distance may take (N, ...) rows), so only a
    batch dimension is required here."""
    if embeddings.ndim == 0:
        raise ValueError(
            "embeddings must have a batch dimension (batch_size, embedding_size), got a scalar."
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
    if ref_emb.shape[1:] != embeddings.shape[1:]:
        raise ValueError(
            f"ref_emb rows have shape {tuple(ref_emb.shape[1:])} but embeddings rows have "
            f"{tuple(embeddings.shape[1:])}; both must come from the same embedder."
        )
    if ref_labels is not None:
        ref_labels = to_device(ref_labels, embeddings)
    return ref_emb, ref_labels


def labels_or_indices_tuple_required(labels, indices_tuple):
    if labels is None and indices_tuple is None:
        raise ValueError("labels and indices_tuple cannot both be None: pass at least one.")


def assert_distance_type(obj, distance_type=None, **attributes):
    """Raise an InvalidArgumentError (a ValueError and, as in PML, an AssertionError) unless `obj.distance` is a `distance_type` (a class or a tuple of
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
    raise InvalidArgumentError(
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


def use_cuda_if_available():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def return_input(x):
    return x


def labels_required(labels):
    if labels is None:
        raise ValueError(
            "labels are required for this loss function: pass one label per embedding."
        )


def labels_not_supported(labels, ref_labels):
    if labels is not None or ref_labels is not None:
        raise ValueError(
            "labels and ref_labels are not supported for this loss function: pass indices_tuple "
            "or neither."
        )


def ref_not_supported(embeddings, labels, ref_emb, ref_labels):
    """For parts that compare a batch with itself only: the reference must *be* the batch (as
    set_ref_emb returns it when no reference is given)."""
    if ref_emb is not embeddings or ref_labels is not labels:
        raise ValueError("ref_emb is not supported for this loss function: leave ref_emb=None.")


def indices_tuple_not_supported(indices_tuple):
    if indices_tuple is not None:
        raise ValueError(
            "indices_tuple is not supported for this loss function: leave indices_tuple=None."
        )


def safe_random_choice(input_data, size):
    """`size` draws from input_data, without replacement when there are enough elements."""
    replace = len(input_data) < size
    return NUMPY_RANDOM.choice(input_data, size=size, replace=replace)


def try_next_on_generator(gen, iterable):
    """(generator, next item), restarting the generator from `iterable` when it is exhausted."""
    try:
        return gen, next(gen)
    except StopIteration:
        gen = iter(iterable)
        return gen, next(gen)


def torch_standard_scaler(x):
    """Zero mean, unit (unbiased) standard deviation per column."""
    return (x - x.mean(dim=0)) / x.std(dim=0)


def torch_all_from_dim_to_end(x, dim):
    return torch.all(x.reshape(*x.shape[:dim], -1), dim=-1)


def get_labels_to_indices(labels):
    """{label: numpy array of the positions holding it}, labels in order of first appearance."""
    labels = np.asarray(to_numpy(labels))
    unique, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse.reshape(-1)))[:-1])
    labels_to_indices = collections.defaultdict(list)
    for position in np.argsort(first_index):
        labels_to_indices[unique[position]] = groups[position]
    return labels_to_indices


def make_label_to_rank_dict(label_set):
    """{label: its rank among the sorted distinct labels}."""
    unique = np.unique(np.asarray(label_set))
    return {label: rank for label, rank in zip(label_set, np.searchsorted(unique, label_set))}


def get_label_map(labels):
    """{hierarchy level: {label: rank}} for 1D labels (level 0) or (N, levels) labels."""
    labels = np.asarray(labels)
    columns = labels[:, None] if labels.ndim == 1 else labels
    return {
        level: {label: rank for rank, label in enumerate(np.unique(columns[:, level]))}
        for level in range(columns.shape[1])
    }


class LabelMapper:
    """Maps dataset labels to 0..C-1 per hierarchy level when set_min_label_to_zero, else
    returns them unchanged."""

    def __init__(self, set_min_label_to_zero=False, dataset_labels=None):
        self.set_min_label_to_zero = set_min_label_to_zero
        if set_min_label_to_zero:
            self.label_map = get_label_map(to_numpy(dataset_labels))

    def map(self, labels, hierarchy_level):
        if not self.set_min_label_to_zero:
            return labels
        level_map = self.label_map[hierarchy_level]
        return np.array([level_map[label] for label in to_numpy(labels)], dtype=int)


def map_labels(label_map, labels):
    """Apply label_map(labels_of_one_level, level) to every level of labels (numpy result)."""
    labels = to_numpy(labels)
    if labels.ndim != 2:
        return label_map(labels, 0)
    mapped = np.zeros_like(labels)
    for level in range(labels.shape[1]):
        mapped[:, level] = label_map(labels[:, level], level)
    return mapped


def get_hierarchy_label(batch_labels, hierarchy_level):
    if hierarchy_level == "all" or batch_labels.ndim != 2:
        return batch_labels
    return batch_labels[:, hierarchy_level]


def process_label(labels, hierarchy_level, label_map):
    """Map labels with label_map, keep one hierarchy level (or "all"), return a tensor."""
    labels = map_labels(label_map, to_numpy(labels))
    return numpy_to_torch(get_hierarchy_label(labels, hierarchy_level))


def shift_indices_tuple(indices_tuple, batch_size):
    """Offset the reference-side indices by batch_size (for a reference appended after the batch):
    positives and negatives of a triplet, the second element of each pair."""
    if len(indices_tuple) == 3:
        anchors, positives, negatives = indices_tuple
        return anchors, positives + batch_size, negatives + batch_size
    anchors1, positives, anchors2, negatives = indices_tuple
    return anchors1, positives + batch_size, anchors2, negatives + batch_size


def concatenate_indices_tuples(it1, it2):
    return tuple(torch.cat([x, y], dim=0) for x, y in zip(it1, it2))


def unslice_by_n(input_tensors):
    """Interleave n tensors row by row: the inverse of slicing x[i::n] for i in range(n)."""
    n = len(input_tensors)
    rows, *rest = input_tensors[0].shape
    output = torch.zeros((rows * n, *rest), device=input_tensors[0].device)
    for i, tensor in enumerate(input_tensors):
        output[i::n] = tensor
    return output


def exclude(it, targets):
    return [x for x in it if x not in targets]


def append_map(it, suf):
    return [x + suf for x in it]


def regex_wrapper(x):
    if is_list_or_tuple(x):
        return [re.compile(z) for z in x]
    return re.compile(x)


def regex_replace(search, replace, contents):
    return re.sub(search, replace, contents)


def sqlite_obj_to_dict(sqlite_obj):
    """Rows (mappings with the same keys) to {column: [values]}."""
    if not sqlite_obj:
        return {}
    return {key: [row[key] for row in sqlite_obj] for key in sqlite_obj[0].keys()}


def list_of_recordable_attributes_list_names():
    return ["_record_these", "_record_these_stats"]


def add_to_recordable_attributes(input_obj, name=None, list_of_names=None, is_stat=False):
    """List `name`/`list_of_names` on input_obj for loggers; missing attributes start at 0."""
    list_name = "_record_these_stats" if is_stat else "_record_these"
    if not hasattr(input_obj, list_name):
        setattr(input_obj, list_name, [])
    recorded = getattr(input_obj, list_name)
    for n in ([name] if name is not None else []) + list(list_of_names or []):
        if n not in recorded:
            recorded.append(n)
        if not hasattr(input_obj, n):
            setattr(input_obj, n, 0)


def reset_stats(input_obj):
    # vars(): a module without statistics (collect_stats off) would otherwise pay
    # nn.Module.__getattr__'s slow lookup on every forward call.
    for name in vars(input_obj).get("_record_these_stats", ()):
        setattr(input_obj, name, 0)


def set_requires_grad(model, requires_grad):
    for parameter in model.parameters():
        parameter.requires_grad = requires_grad


def set_layers_to_eval(layer_name):
    """A function for model.apply() that puts every layer whose class name contains layer_name
    (e.g. "BatchNorm") in eval mode."""

    def set_to_eval(module):
        if layer_name in type(module).__name__:
            module.eval()

    return set_to_eval


def get_train_dataloader(dataset, batch_size, sampler, num_workers, collate_fn):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        collate_fn=collate_fn,
        shuffle=sampler is None,
        pin_memory=False,
    )


def get_eval_dataloader(dataset, batch_size, num_workers, collate_fn):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=int(batch_size),
        drop_last=False,
        num_workers=num_workers,
        collate_fn=collate_fn,
        shuffle=False,
        pin_memory=False,
    )


class EmbeddingDataset(torch.utils.data.Dataset):
    """(embedding, label) pairs from two aligned arrays or tensors."""

    def __init__(self, embeddings, labels):
        self.embeddings = embeddings
        self.labels = labels

    def __len__(self):
        return len(self.embeddings)

    def __getitem__(self, idx):
        return self.embeddings[idx], self.labels[idx]


def modelpath_creator(folder, basename, identifier, extension=".pth"):
    name = basename if identifier is None else f"{basename}_{identifier}"
    return os.path.join(folder, name + extension)


def _unwrapped(model):
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, parallel) else model


def save_model(model, filepath):
    """Save the state dict, without the DataParallel/DDP wrapper's "module." prefix."""
    torch.save(_unwrapped(model).state_dict(), filepath)


def load_model(model_def, model_filename, device):
    state_dict = torch.load(model_filename, map_location=device, weights_only=True)
    _unwrapped(model_def).load_state_dict(state_dict)


def operate_on_dict_of_models(
    input_dict,
    suffix,
    folder,
    operation,
    logging_string="",
    log_if_successful=False,
    assert_success=False,
):
    """Run operation(model, path) for each named model, path = folder/{name}_{suffix}.pth.
    A failure is logged as a warning, and raised as OSError when assert_success."""
    for name, model in input_dict.items():
        path = modelpath_creator(folder, name, suffix)
        try:
            operation(model, path)
        except Exception as error:
            LOGGER.warning(f"Could not {logging_string} {path}")
            if assert_success:
                raise OSError(f"Could not {logging_string} {path}: {error}") from error
            continue
        if log_if_successful:
            LOGGER.info(f"{logging_string} {path}")


def save_dict_of_models(input_dict, suffix, folder, **kwargs):
    operate_on_dict_of_models(input_dict, suffix, folder, save_model, "SAVE", **kwargs)


def load_dict_of_models(input_dict, suffix, folder, device, **kwargs):
    def load(model, path):
        load_model(model, path, device)

    operate_on_dict_of_models(input_dict, suffix, folder, load, "LOAD", **kwargs)


def delete_dict_of_models(input_dict, suffix, folder, **kwargs):
    def delete(model, path):
        if os.path.exists(path):
            os.remove(path)

    operate_on_dict_of_models(input_dict, suffix, folder, delete, "DELETE", **kwargs)


def latest_version(folder, string_to_glob="trunk_*.pth", best=False):
    """(highest saved epoch, its file suffix) among files named like `string_to_glob`:
    `name_<epoch>.ext` -> (epoch, epoch), or with best `name_best<epoch>.ext` -> (epoch,
    "best<epoch>"); (0, None) when there is none."""
    pattern = re.compile(r"_best(\d+)\.[^.]+$" if best else r"_(\d+)\.[^.]+$")
    names = (os.path.basename(f) for f in glob.glob(os.path.join(folder, string_to_glob)))
    epochs = [int(m.group(1)) for m in map(pattern.search, names) if m]
    if not epochs:
        return 0, None
    epoch = max(epochs)
    return epoch, f"best{epoch}" if best else epoch
