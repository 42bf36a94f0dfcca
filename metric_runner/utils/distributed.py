"""Losses and miners across the processes of DistributedDataParallel (any torch.distributed
backend: gloo on CPU, NCCL on CUDA).

Each process holds one slice of the global batch. The wrappers all_gather the slices so the
loss sees every pair of the global batch; the process's own slice keeps its gradient, the
others are constants. DDP averages the parameters' gradients over the processes, so the
wrappers scale the gradient reaching the local slice by the world size: after DDP's average the
model receives exactly the gradient of one process on the concatenated batch, while the loss
value and the gradient of the loss's own parameters (proxies, class weights) are those of one
process too. (PML returns `world_size * loss` instead, which gives the same embedding gradients
but `world_size` times the gradient of a loss's own parameters.)

Without an initialized process group both wrappers behave like the plain loss and miner.
"""

import warnings

import torch
import torch.distributed as dist

from ..losses.base_metric_loss_function import BaseMetricLossFunction
from ..losses.cross_batch_memory import CrossBatchMemory
from ..losses.mixins import WeightRegularizerMixin
from ..miners.base_miner import BaseMiner
from . import loss_and_miner_utils as lmu


def is_distributed():
    return dist.is_available() and dist.is_initialized()


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by `scale` on the way back."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def _scale_gradient(x, scale):
    if x is None or scale == 1 or not x.requires_grad:
        return x
    return _ScaleGradient.apply(x, scale)


def _gather_per_rank(x):
    """[x of rank 0, x of rank 1, ...]; this rank's entry is `x` itself, so it keeps its
    gradient. Every rank must pass the same shape (equal local batch sizes)."""
    sent = x.detach().contiguous()
    if x.dtype == torch.bool:  # gloo cannot all_gather bool tensors
        sent = sent.to(torch.uint8)
    parts = [torch.empty_like(sent) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sent)
    parts = [part.to(x.dtype) for part in parts]
    parts[dist.get_rank()] = x
    return parts


def _local_first(parts):
    """This rank's part, then the others in rank order: the layout PML's tuples index."""
    rank = dist.get_rank()
    return torch.cat([parts[rank]] + parts[:rank] + parts[rank + 1 :])


def _gather_local_first(x):
    return None if x is None else _local_first(_gather_per_rank(x))


def _gather_rank_order(x):
    return None if x is None else torch.cat(_gather_per_rank(x))


def _local_first_to_rank_order(batch_size, device):
    """position in the rank-ordered global batch of each local-first position."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    ranks = [rank] + [r for r in range(world_size) if r != rank]
    starts = torch.tensor(ranks, device=device) * batch_size
    return (starts.unsqueeze(1) + torch.arange(batch_size, device=device)).view(-1)


def all_gather(x):
    """The other ranks' `x`, concatenated in rank order (without this rank's own)."""
    parts = _gather_per_rank(x)
    del parts[dist.get_rank()]
    return torch.cat(parts)


def all_gather_embeddings_and_labels(emb, labels):
    """The other ranks' embeddings and labels (without this rank's own)."""
    return all_gather(emb), all_gather(labels)


def select_ref_or_regular(regular, ref):
    return regular if ref is None else ref


def gather(emb, labels):
    """(gathered embeddings, gathered labels, labels): this rank's rows first, its embeddings
    keeping their gradient."""
    if labels is not None:
        labels = labels.to(emb.device)
    return _gather_local_first(emb), _gather_local_first(labels), labels


def gather_emb_and_ref(emb, labels, ref_emb=None, ref_labels=None):
    """gather of the embeddings and of the reference set (None when there is none)."""
    all_emb, all_labels, labels = gather(emb, labels)
    all_ref_emb = all_ref_labels = None
    if ref_emb is not None:
        all_ref_emb, all_ref_labels, _ = gather(ref_emb, ref_labels)
    return all_emb, all_labels, all_ref_emb, all_ref_labels, labels


def gather_enqueue_mask(enqueue_mask, device):
    if enqueue_mask is None:
        return None
    return _gather_local_first(enqueue_mask.to(device))


def get_indices_tuple(labels, ref_labels, embeddings=None, ref_emb=None, miner=None):
    """Pairs of the local batch (anchors) with the local-first gathered batch, from `miner` or
    all of them, minus each sample's pair with its own copy (at its own index)."""
    if miner is None:
        own_position = torch.arange(len(labels), device=labels.device)
        return lmu.all_pairs_of_labels(labels, ref_labels, self_columns=own_position)
    mined = miner(embeddings, labels, ref_emb, ref_labels)
    return lmu.remove_self_comparisons(mined, torch.arange(len(labels)), len(ref_labels))


class DistributedLossWrapper(torch.nn.Module):
    """Computes `loss` over the global batch of all processes.

    efficient=False: anchors and references are the whole gathered batch (the one-process loss).
    efficient=True: anchors are this process's samples, references the gathered batch (or the
    gathered `ref_emb`); less work, gradients differ from one process. A loss with learned
    proxies (ArcFace, ProxyAnchor, ...) has the proxies as its reference set, so it needs no
    gathering then. A CrossBatchMemory fills its memory with the global batch in both modes;
    efficient=True needs `enqueue_mask` and makes the local unmasked rows the anchors (PML
    refuses efficient=True for it). `indices_tuple` indexes the gathered batch with this
    process's samples first (as PML's does), e.g. the output of a `DistributedMinerWrapper` of
    the same `efficient`.
    """

    def __init__(self, loss, efficient=False):
        super().__init__()
        if not isinstance(loss, (BaseMetricLossFunction, CrossBatchMemory)):
            raise TypeError(
                "The input loss must extend BaseMetricLossFunction or CrossBatchMemory, got "
                f"{type(loss).__name__}; wrap the inner loss of other wrappers instead."
            )
        self.loss = loss
        self.efficient = efficient

    def forward(
        self,
        embeddings,
        labels=None,
        indices_tuple=None,
        ref_emb=None,
        ref_labels=None,
        enqueue_mask=None,
    ):
        is_cross_batch = isinstance(self.loss, CrossBatchMemory)
        if is_cross_batch and (ref_emb is not None or ref_labels is not None):
            raise ValueError("CrossBatchMemory takes no ref_emb/ref_labels: its memory is that.")
        if enqueue_mask is not None and not is_cross_batch:
            raise ValueError("enqueue_mask is only for a wrapped CrossBatchMemory.")
        if not is_distributed():
            warnings.warn(
                "DistributedLossWrapper is being used in a non-distributed setting. "
                "Returning the loss as is.",
                stacklevel=2,
            )
            if is_cross_batch:
                return self.loss(embeddings, labels, indices_tuple, enqueue_mask)
            return self.loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        world_size = dist.get_world_size()
        if is_cross_batch:
            return self.forward_cross_batch(
                embeddings, labels, indices_tuple, ref_emb, ref_labels, world_size, enqueue_mask
            )
        return self.forward_regular_loss(
            embeddings, labels, indices_tuple, ref_emb, ref_labels, world_size
        )

    def forward_regular_loss(self, emb, labels, indices_tuple, ref_emb, ref_labels, world_size):
        emb, ref_emb = _scale_gradient(emb, world_size), _scale_gradient(ref_emb, world_size)
        if self.efficient:
            return self.local_anchor_loss(emb, labels, indices_tuple, ref_emb, ref_labels)
        all_emb, all_labels, all_ref_emb, all_ref_labels, _ = gather_emb_and_ref(
            emb, labels, ref_emb, ref_labels
        )
        return self.loss(all_emb, all_labels, indices_tuple, all_ref_emb, all_ref_labels)

    def local_anchor_loss(self, emb, labels, indices_tuple, ref_emb, ref_labels):
        if isinstance(self.loss, WeightRegularizerMixin):
            return self.loss(emb, labels, indices_tuple)
        if ref_emb is not None:
            # A separate reference set holds no copy of the anchors: no pair to remove.
            all_ref_emb, all_ref_labels, _ = gather(ref_emb, ref_labels)
            return self.loss(emb, labels, indices_tuple, all_ref_emb, all_ref_labels)
        if labels is None:
            raise ValueError("DistributedLossWrapper(efficient=True) needs the labels.")
        all_emb, all_labels, labels = gather(emb, labels)
        if indices_tuple is None:
            indices_tuple = get_indices_tuple(labels, all_labels)
        return self.loss(emb, labels, indices_tuple, all_emb, all_labels)

    def forward_cross_batch(
        self, emb, labels, indices_tuple, ref_emb, ref_labels, world_size, enqueue_mask
    ):
        """Every process feeds the rank-ordered global batch to its own memory, so all the
        memories hold what one process's would (PML's local-first order makes them differ once
        the queue wraps). `ref_emb`/`ref_labels` are PML's signature; forward refuses them."""
        emb = _scale_gradient(emb, world_size)
        if self.efficient:
            return self.local_anchor_cross_batch(emb, labels, indices_tuple, enqueue_mask)
        if indices_tuple is not None:
            if enqueue_mask is not None:
                raise ValueError(
                    "A distributed CrossBatchMemory takes indices_tuple or enqueue_mask, not both."
                )
            indices_tuple = self.anchors_in_rank_order(indices_tuple, len(emb))
        return self.loss(
            _gather_rank_order(emb),
            _gather_rank_order(labels),
            indices_tuple,
            _gather_rank_order(enqueue_mask),
        )

    def local_anchor_cross_batch(self, emb, labels, indices_tuple, enqueue_mask):
        """efficient=True: the enqueue_mask rows of every process (the keys) go into the memory,
        this process's other rows are the anchors; `indices_tuple`'s anchors index them. Anchors
        are never enqueued, so no anchor meets its own copy; without enqueue_mask every row is
        both, and CrossBatchMemory has no way to drop only the local rows' self pairs."""
        if enqueue_mask is None:
            raise ValueError(
                "DistributedLossWrapper(CrossBatchMemory, efficient=True) needs enqueue_mask "
                "(the rows to enqueue; the others are the anchors); without one use "
                "efficient=False."
            )
        labels, enqueue_mask = labels.to(emb.device), enqueue_mask.to(emb.device)
        all_mask = _gather_rank_order(enqueue_mask)
        keys = _gather_rank_order(emb.detach())[all_mask]
        key_labels = _gather_rank_order(labels)[all_mask]
        anchors, anchor_labels = emb[~enqueue_mask], labels[~enqueue_mask]
        is_key = torch.cat([torch.zeros_like(anchor_labels), torch.ones_like(key_labels)]).bool()
        return self.loss(
            torch.cat([anchors, keys]),
            torch.cat([anchor_labels, key_labels]),
            indices_tuple,
            is_key,
        )

    @staticmethod
    def anchors_in_rank_order(indices_tuple, batch_size):
        """The tuple's anchors index the local-first batch; the memory's entries stay as given."""
        to_rank_order = _local_first_to_rank_order(batch_size, indices_tuple[0].device)
        if len(indices_tuple) == 3:
            return (to_rank_order[indices_tuple[0]], *indices_tuple[1:])
        a1, p, a2, n = indices_tuple
        return to_rank_order[a1], p, to_rank_order[a2], n


class DistributedMinerWrapper(torch.nn.Module):
    """Mines the global batch of all processes; the tuple indexes the gathered batch with this
    process's samples first. efficient=True mines this process's samples (anchors) against the
    gathered batch, without a sample's pair with itself, for a DistributedLossWrapper with
    efficient=True."""

    def __init__(self, miner, efficient=False):
        super().__init__()
        if not isinstance(miner, BaseMiner):
            raise TypeError(f"The input miner must extend BaseMiner, got {type(miner).__name__}.")
        self.miner = miner
        self.efficient = efficient

    def forward(self, emb, labels, ref_emb=None, ref_labels=None):
        if not is_distributed():
            warnings.warn(
                "DistributedMinerWrapper is being used in a non-distributed setting. "
                "Returning the miner's output as is.",
                stacklevel=2,
            )
            return self.miner(emb, labels, ref_emb, ref_labels)
        emb, labels = emb.detach(), labels.to(emb.device)
        all_ref_emb = all_ref_labels = None
        if ref_emb is not None:
            all_ref_emb, all_ref_labels, _ = gather(ref_emb.detach(), ref_labels)
            if self.efficient:
                return self.miner(emb, labels, all_ref_emb, all_ref_labels)
        all_emb, all_labels, _ = gather(emb, labels)
        if not self.efficient:
            return self.miner(all_emb, all_labels, all_ref_emb, all_ref_labels)
        return get_indices_tuple(labels, all_labels, emb, all_emb, self.miner)
