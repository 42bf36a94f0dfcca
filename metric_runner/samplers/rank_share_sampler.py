"""Each process's share of every global batch, for training with several processes (DDP)."""

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def epoch_seed(seed, epoch):
    """A seed for (run seed, epoch) pairs whose streams do not overlap."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


class RankShareSampler(Sampler):
    """Cuts every global batch of `sampler` (consecutive blocks of `batch_size` indices, as
    MPerClassSampler yields them) into `num_replicas` equal slices and yields slice `rank`.

    The wrapped sampler draws from `generator`, which is reseeded from (`seed`, epoch) at each
    pass, so every process draws the same global batches, one process with the same seed draws
    them too, and a resumed run draws those of its epoch (`set_epoch`). Each pass is the next
    epoch. An incomplete last global batch is dropped.
    """

    def __init__(self, sampler, batch_size, generator, seed=0, num_replicas=None, rank=None):
        num_replicas, rank = process_group_position(num_replicas, rank)
        if batch_size % num_replicas != 0:
            raise ValueError(
                f"batch_size={batch_size} does not divide by the {num_replicas} processes: "
                f"choose a batch_size that is a multiple of {num_replicas} (each process "
                "trains on an equal share of every global batch)"
            )
        self.sampler = sampler
        self.batch_size = batch_size
        self.generator = generator
        self.seed = seed
        self.num_replicas, self.rank = num_replicas, rank
        self.local_batch_size = batch_size // num_replicas
        self.epoch = 1

    def set_epoch(self, epoch):
        """The epoch the next pass draws (1 = the first)."""
        self.epoch = epoch

    def __len__(self):
        return len(self.sampler) // self.batch_size * self.local_batch_size

    def __iter__(self):
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        indices = torch.as_tensor(list(self.sampler), dtype=torch.long)
        num_batches = len(indices) // self.batch_size
        batches = indices[: num_batches * self.batch_size].view(num_batches, self.batch_size)
        start = self.rank * self.local_batch_size
        return iter(batches[:, start : start + self.local_batch_size].flatten().tolist())


def process_group_position(num_replicas, rank):
    """(world size, rank): as given, else from the initialized process group, else (1, 0)."""
    initialized = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
    return num_replicas, rank
