"""`parallelize()`: the one place a model is laid out over devices (torchtitan's ordered parallelize).

The order, as torchtitan applies it (`factory.model.converter_order.CONVERTER_ORDER`): activation checkpointing
(a converter applied before this), then `torch.compile`, then data parallelism: DDP, or FSDP2 (`fully_shard`
per block, then the root); both record themselves as converters, so a model compiled or sharded twice, or
converted after sharding, is refused. Tensor parallelism is not built here: large runs take the
Megatron-Core engine. Under `torchrun` the process group comes from
`distributed()`: gloo on CPU, NCCL on GPU, one device per local rank.

    with distributed() as (rank, world, device):
        model = parallelize(build_model(...), ParallelPlan(data_parallel="fsdp", device=device))
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from factory.model.converter_order import record_converter


@dataclass(frozen=True)
class ParallelPlan:
    """How to lay the model out. Runtime-only: it never changes what the model computes (up to float
    summation order)."""

    data_parallel: Literal["ddp", "fsdp"] = "ddp"  # used only when a process group of > 1 rank exists
    compile: bool = False
    device: str = "cpu"


def world() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def distributed() -> Iterator[tuple[int, int, str]]:
    """Yield (rank, world size, device); under torchrun (WORLD_SIZE > 1) join the env:// process group
    first (unless the caller already did) and, at the end, barrier and leave the group we joined."""
    cuda = torch.cuda.is_available()
    owned = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
        owned = True
    rank, size = world()
    device = f"cuda:{torch.cuda.current_device()}" if cuda else "cpu"
    try:
        yield rank, size, device
        if size > 1:
            dist.barrier()  # no rank returns (and lets the executor publish) before the others are done
    finally:
        if owned:
            dist.destroy_process_group()


def parallelize(model: nn.Module, plan: ParallelPlan = ParallelPlan(), blocks: Sequence[nn.Module] | None = None) -> nn.Module:
    """Lay `model` out per `plan` on the current process group; returns the model to train.

    `blocks` are the repeated layers compiled and sharded one by one (default `model.model.layers`, a transformers
    causal LM's decoder blocks; a module that wraps one, such as a reward model, names its backbone's). DDP returns a
    wrapper (the transformers model is `.module`); FSDP2 shards in place (parameters become DTensors). Use
    `torch.distributed.checkpoint.state_dict` to read a full state dict of either.
    """
    model = model.to(plan.device)
    blocks = model.model.layers if blocks is None else blocks
    if plan.compile:
        record_converter(model, "compile")
        for block in blocks:  # per block, as torchtitan does: small graphs, shared compile
            block.compile()
    _, size = world()
    if size == 1:
        return model
    record_converter(model, "shard")
    if plan.data_parallel == "ddp":
        device_ids = [torch.device(plan.device).index] if plan.device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=device_ids)

    mesh = init_device_mesh(torch.device(plan.device).type, (size,))
    for block in blocks:  # one all-gather per block in forward, freed after it
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the rest: embeddings, final norm, LM head
    return model
