"""`parallelize()`: the one place a model is laid out over devices (torchtitan's ordered parallelize).

The order, as torchtitan applies it: tensor parallel, then activation checkpointing (a converter,
see `factory.model.converters`), then `torch.compile`, then FSDP2 sharding (`fully_shard` per block,
then the root). On one process only the device move and optional compile apply; a plan with more
than one rank needs a process group (`torchrun`), which the multi-GPU training work adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ParallelPlan:
    """How to lay the model out. Runtime-only: it never changes what the model computes."""

    data_parallel_shard: int = 1
    tensor_parallel: int = 1
    compile: bool = False
    device: str = "cpu"


def parallelize(model: nn.Module, plan: ParallelPlan = ParallelPlan()) -> nn.Module:
    """Lay `model` out per `plan`; single-process plans only for now."""
    if plan.tensor_parallel != 1 or plan.data_parallel_shard != 1:
        raise NotImplementedError("tensor parallel / FSDP need torchrun; this build trains on one process")
    model = model.to(plan.device)
    if plan.compile:
        for block in model.model.layers:  # per block, as torchtitan does: small graphs, shared compile
            block.compile()
    return model
