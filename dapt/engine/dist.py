"""Multi-GPU training with torch.distributed, launched by ``torchrun`` (one process per GPU).

Prompt learning has few learnable tensors, so instead of wrapping the model in
DistributedDataParallel (whose gradient hooks only see ``forward``), the trainer averages the
gradients of the learnable parameters across processes after every backward: the same update
DDP computes. Each process sees its shard of the training set (DistributedSampler); only rank 0
writes logs, tensorboard and checkpoints.
"""
from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(use_cuda: bool) -> bool:
    """Join the process group that ``torchrun`` describes in the environment; False when single-process."""
    if env_world_size() <= 1:
        return False
    if not dist.is_initialized():
        cuda = use_cuda and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce and average the gradients of ``params`` across processes.

    One collective per step: the gradients are copied into one flat buffer per dtype, summed
    across processes in a single all-reduce, divided by the world size and copied back. Every
    process must hold a gradient for the same parameters (they run the same model).
    """
    if not is_distributed():
        return
    world = get_world_size()
    grads = [p.grad for p in params if p.grad is not None]
    by_dtype = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = _flatten_dense_tensors(group)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(world)
        for g, avg in zip(group, _unflatten_dense_tensors(flat, group)):
            g.copy_(avg)


def broadcast_parameters(params: Iterable[torch.nn.Parameter]) -> None:
    """Start every process from rank 0's initial prompts."""
    if not is_distributed():
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)
