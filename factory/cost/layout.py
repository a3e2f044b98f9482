"""`ParallelLayout`: how one training step is laid out over GPUs (data, tensor, pipeline, context parallel
sizes and how data-parallel ranks shard the training state)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ParallelLayout(BaseModel):
    """Parallel sizes of a training step; their product is the number of GPUs it uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: int = Field(1, ge=1, description="Data-parallel replicas (or FSDP shards).")
    tensor: int = Field(1, ge=1, description="Tensor-parallel size: each layer's matrices split over this many GPUs (with sequence parallel).")
    pipeline: int = Field(1, ge=1, description="Pipeline-parallel stages: the layers split into this many consecutive groups.")
    context: int = Field(1, ge=1, description="Context-parallel size: each sequence's tokens split over this many GPUs.")
    sharding: Literal["none", "optimizer", "fsdp"] = Field(
        "none",
        description="What data-parallel ranks shard: none (DDP), optimizer (Megatron's distributed optimizer, ZeRO-1: "
        "master weights and Adam moments), fsdp (FSDP full shard: weights, gradients and optimizer state).",
    )

    @property
    def gpus(self) -> int:
        return self.data * self.tensor * self.pipeline * self.context


def default_layout(nodes: int, gpus_per_node: int) -> ParallelLayout:
    """Plain data parallelism over every GPU (one replica on a CPU-only step)."""
    return ParallelLayout(data=max(nodes * max(gpus_per_node, 1), 1))
