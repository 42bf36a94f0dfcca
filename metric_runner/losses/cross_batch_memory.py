import torch

from ..utils import common_functions as c_f
from ..utils import loss_and_miner_utils as lmu
from ..utils.errors import InvalidArgumentError
from ..utils.module_with_records import ModuleWithRecords
from .base_loss_wrapper import BaseLossWrapper


class CrossBatchMemory(BaseLossWrapper, ModuleWithRecords):
    """Cross-batch memory (Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020;
    the MoCo queue of He et al., CVPR 2020 with `enqueue_mask`).

    A FIFO queue of the last `memory_size` (detached) embeddings and labels. Each call enqueues
    the batch, then computes the wrapped loss with the batch as anchors and the queue as the
    reference set, over all pairs (or the `miner`'s tuples) minus each sample's pair with its
    own copy. With `enqueue_mask`, only the masked rows are enqueued and only the others are
    anchors. An `indices_tuple` passed in is appended to those tuples as is, so its positives
    and negatives index the queue.
    """

    def __init__(self, loss, embedding_size, memory_size=1024, miner=None, **kwargs):
        super().__init__(loss=loss, **kwargs)
        for name, value in (("embedding_size", embedding_size), ("memory_size", memory_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(
                    f"CrossBatchMemory needs {name} as a positive int, got {value!r}."
                )
        self.embedding_size = embedding_size
        self.memory_size = memory_size
        self.miner = miner
        self.register_buffer("embedding_memory", torch.zeros(memory_size, embedding_size))
        self.register_buffer("label_memory", torch.zeros(memory_size, dtype=torch.long))
        self.reset_queue()
        self.add_to_recordable_attributes(
            list_of_names=["embedding_size", "memory_size", "queue_idx"], is_stat=False
        )

    @staticmethod
    def supported_losses():
        return [
            "AngularLoss",
            "CircleLoss",
            "ContrastiveLoss",
            "GeneralizedLiftedStructureLoss",
            "IntraPairVarianceLoss",
            "LiftedStructureLoss",
            "MarginLoss",
            "MultiSimilarityLoss",
            "NCALoss",
            "NTXentLoss",
            "SignalToNoiseRatioContrastiveLoss",
            "SupConLoss",
            "TripletMarginLoss",
            "TupletMarginLoss",
        ]

    def reset_queue(self):
        self.embedding_memory.zero_()
        self.label_memory.zero_()
        self.has_been_filled = False
        self.queue_idx = 0

    def forward(self, embeddings, labels, indices_tuple=None, enqueue_mask=None):
        self.check_inputs(embeddings, labels, indices_tuple, enqueue_mask)
        labels = c_f.to_device(labels, embeddings)
        self.embedding_memory = c_f.to_device(
            self.embedding_memory, embeddings, dtype=embeddings.dtype
        )
        self.label_memory = c_f.to_device(self.label_memory, labels)
        if enqueue_mask is not None:
            enqueue_mask = c_f.to_device(enqueue_mask, embeddings)
            emb_for_queue, labels_for_queue = embeddings[enqueue_mask], labels[enqueue_mask]
            embeddings, labels = embeddings[~enqueue_mask], labels[~enqueue_mask]
        else:
            emb_for_queue, labels_for_queue = embeddings, labels
        batch_size = len(emb_for_queue)
        if batch_size > self.memory_size:
            raise InvalidArgumentError(
                f"CrossBatchMemory cannot enqueue {batch_size} embeddings into a memory of "
                f"{self.memory_size}; use a memory_size at least as large as the batch."
            )
        self.add_to_memory(emb_for_queue, labels_for_queue, batch_size)
        if self.has_been_filled:
            mem_emb, mem_labels = self.embedding_memory, self.label_memory
        else:
            mem_emb, mem_labels = (
                self.embedding_memory[: self.queue_idx],
                self.label_memory[: self.queue_idx],
            )
        indices_tuple = self.create_indices_tuple(
            embeddings, labels, mem_emb, mem_labels, indices_tuple, enqueue_mask is None
        )
        return self.loss(embeddings, labels, indices_tuple, mem_emb, mem_labels)

    def check_inputs(self, embeddings, labels, indices_tuple, enqueue_mask):
        c_f.check_shapes(embeddings, labels)
        if indices_tuple is not None and enqueue_mask is not None:
            raise InvalidArgumentError(
                "CrossBatchMemory takes indices_tuple or enqueue_mask, not both: with "
                "enqueue_mask the queued rows leave the batch, so the tuples would point nowhere."
            )
        if labels is None:
            raise InvalidArgumentError(
                "CrossBatchMemory needs labels: they are stored in the queue."
            )
        if embeddings.shape[1] != self.embedding_size:
            raise InvalidArgumentError(
                f"CrossBatchMemory was built for embedding_size={self.embedding_size} but got "
                f"embeddings of size {embeddings.shape[1]}."
            )
        if enqueue_mask is not None and (
            enqueue_mask.dtype != torch.bool or enqueue_mask.shape != labels.shape
        ):
            raise InvalidArgumentError(
                f"enqueue_mask must be a boolean tensor with one entry per embedding "
                f"({len(labels)}), got {enqueue_mask.dtype} of shape {tuple(enqueue_mask.shape)}."
            )

    def add_to_memory(self, embeddings, labels, batch_size):
        """Writes the batch at the queue's head, wrapping around, and remembers where
        (`curr_batch_idx`) so the loss can skip each sample's pair with its own copy."""
        self.curr_batch_idx = (
            torch.arange(batch_size, device=embeddings.device) + self.queue_idx
        ) % self.memory_size
        self.embedding_memory[self.curr_batch_idx] = embeddings.detach()
        self.label_memory[self.curr_batch_idx] = labels
        if self.queue_idx + batch_size >= self.memory_size:
            self.has_been_filled = True
        self.queue_idx = (self.queue_idx + batch_size) % self.memory_size

    def create_indices_tuple(
        self, embeddings, labels, E_mem, L_mem, input_indices_tuple, do_remove_self_comparisons
    ):
        if self.miner is not None:
            indices_tuple = self.miner(embeddings, labels, E_mem, L_mem)
        else:
            indices_tuple = self.all_pairs(labels, L_mem, do_remove_self_comparisons)
        if do_remove_self_comparisons and self.miner is not None:
            indices_tuple = lmu.remove_self_comparisons(
                indices_tuple, self.curr_batch_idx, self.memory_size
            )
        if input_indices_tuple is None:
            return indices_tuple
        input_indices_tuple = c_f.to_device(input_indices_tuple, embeddings)
        if len(input_indices_tuple) == 3 and len(indices_tuple) == 4:
            input_indices_tuple = lmu.convert_to_pairs(input_indices_tuple, labels)
        elif len(input_indices_tuple) == 4 and len(indices_tuple) == 3:
            input_indices_tuple = lmu.convert_to_triplets(input_indices_tuple, labels)
        return tuple(torch.cat([x, y]) for x, y in zip(indices_tuple, input_indices_tuple))

    def all_pairs(self, labels, L_mem, do_remove_self_comparisons):
        """Every (batch, memory) pair, minus each sample's positive pair with its own copy."""
        self_columns = self.curr_batch_idx if do_remove_self_comparisons else None
        return lmu.all_pairs_of_labels(labels, L_mem, self_columns)
