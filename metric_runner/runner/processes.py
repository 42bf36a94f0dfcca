"""Training with several processes (`torchrun --nproc_per_node=N -m metric_runner ...`): the
process group, which device each process uses, DDP-wrapped models, and rank 0's decisions."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

Value = TypeVar("Value")


@dataclass
class Processes:
    """Where this process stands: rank 0 of 1 when not launched by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def rank0_decides(self, keep_going: bool) -> bool:
        """Rank 0's decision for every process (it alone evaluates); the others wait here
        until rank 0 has evaluated and checkpointed."""
        flag = torch.tensor([int(keep_going)], device=self.collective_device())
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def collective_device(self) -> torch.device | str:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else "cpu"


def launched_processes() -> Processes:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK), or one process."""
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
        export_submitit_tasks()
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return Processes()
    return Processes(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", 0)))


def export_submitit_tasks() -> None:
    """A job of several tasks (hydra/launcher=slurm with tasks_per_node > 1 or nodes > 1):
    submitit knows each task's rank and the first node's address; export them as torchrun
    would, so the tasks train together."""
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def join_process_group(processes: Processes) -> None:
    """Initialize the default process group once: NCCL when CUDA is available, else gloo."""
    if processes.distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(processes.local_rank)
        dist.init_process_group(backend)


def rank0_value(processes: Processes, compute: Callable[[], Value]) -> Value:
    """`compute()` on rank 0, sent to every process (any picklable value)."""
    value = [compute() if processes.is_main else None]
    if processes.distributed:
        dist.broadcast_object_list(value, src=0)
    return value[0]


def process_device(processes: Processes, configured: torch.device) -> torch.device:
    """The device of this process: its own GPU (LOCAL_RANK) under torchrun with CUDA."""
    if processes.distributed and configured.type == "cuda":
        return torch.device("cuda", processes.local_rank)
    return configured


def wrap_for_ddp(
    models: dict[str, torch.nn.Module], device: torch.device
) -> dict[str, torch.nn.Module]:
    """Each model with trainable parameters in DistributedDataParallel (gradients averaged
    over the processes at each backward pass)."""
    device_ids = [device.index] if device.type == "cuda" else None
    return {
        name: DistributedDataParallel(model, device_ids=device_ids)
        if any(p.requires_grad for p in model.parameters())
        else model
        for name, model in models.items()
    }


def leave_process_group(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()
