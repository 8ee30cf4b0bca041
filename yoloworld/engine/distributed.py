"""Distributed training through PyTorch's own engine (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK):

    torchrun --nproc_per_node 8 -m yoloworld train finetune_coco
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 --nproc_per_node 8 -m yoloworld train ...

and the sampler that gives every process its share of each global batch, resumable mid-epoch.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from yoloworld.devices import resolve_device


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")  # the training device: every collective's tensors live there

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group torchrun describes and pick this process's device; a plain run is world size 1.

    On CUDA the group has NCCL for GPU tensors and gloo for CPU ones (`all_gather_object` of Python values);
    our own collectives put their tensors on the training device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(device=resolve_device(device))
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    info.device = resolve_device(device, local_rank=info.local_rank)
    if not dist.is_initialized():
        backend = "gloo"
        if info.device.type == "cuda":
            torch.cuda.set_device(info.device)
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's decision, on every rank (e.g. 'save now' when it depends on a wall clock)."""
    if not info.enabled:
        return flag
    value = torch.tensor([int(flag)], device=info.device)
    dist.broadcast(value, 0)
    return bool(value.item())


def all_gather_objects(value, info: DistInfo) -> list:
    if not info.enabled:
        return [value]
    out = [None] * info.world_size
    dist.all_gather_object(out, value)
    return out


def max_param_difference(model: torch.nn.Module, info: DistInfo) -> float:
    """Largest difference between any rank's parameters and rank 0's (0.0 when the processes are in sync)."""
    if not info.enabled:
        return 0.0
    worst = torch.zeros((), dtype=torch.float64, device=info.device)
    for parameter in model.parameters():
        reference = parameter.detach().clone()
        dist.broadcast(reference, 0)
        worst = torch.maximum(worst, (parameter.detach() - reference).abs().max().double())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst.item())


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches for one process: the epoch's permutation (from seed and epoch) is cut into global batches of
    batch_size x world_size; process r takes slice r of each. A single process with the global batch sees the
    same images. Starts at `start_batch` (resume mid-epoch); incomplete global batches are dropped."""

    def __init__(self, length: int, batch_size: int, info: DistInfo, seed: int, epoch: int, start_batch: int = 0):
        self.length, self.batch_size, self.info = length, batch_size, info
        self.seed, self.epoch, self.start_batch = seed, epoch, start_batch

    @staticmethod
    def batches_per_epoch(length: int, batch_size: int, world_size: int) -> int:
        return max(length // (batch_size * world_size), 1)

    def __len__(self) -> int:
        return self.batches_per_epoch(self.length, self.batch_size, self.info.world_size) - self.start_batch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator)
        global_batch = self.batch_size * self.info.world_size
        total = self.batches_per_epoch(self.length, self.batch_size, self.info.world_size)
        if len(order) < total * global_batch:  # fewer images than one global batch: repeat them
            order = order.repeat(-(-total * global_batch // len(order)))
        for index in range(self.start_batch, total):
            start = index * global_batch + self.info.rank * self.batch_size
            yield order[start:start + self.batch_size].tolist()


__all__ = ["DistInfo", "init_distributed", "barrier", "broadcast_flag",
           "all_gather_objects", "max_param_difference", "cleanup", "GlobalBatchSampler"]
