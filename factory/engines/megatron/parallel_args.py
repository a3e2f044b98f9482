"""`ParallelLayout` -> Megatron-Core's parallel and optimizer arguments, checked against the model's widths."""

from __future__ import annotations

from typing import Any

from factory.cost.layout import ParallelLayout
from factory.errors import SpecError
from factory.model.config import ModelConfig


def megatron_parallel_args(layout: ParallelLayout, config: ModelConfig, expert: int = 1,
                           where: str = "resources.layout") -> dict[str, Any]:
    """Megatron `tensor/pipeline/context/expert_model_parallel_size`, sequence parallel and the distributed
    optimizer (or Megatron FSDP). `expert` ranks are carved out of the data-parallel ranks, as in Megatron. An error
    names the layout's field under `where` (the spec path the layout came from)."""
    tp = layout.tensor
    divisible = {"num_attention_heads": config.num_attention_heads, "num_key_value_heads": config.num_key_value_heads,
                 "mamba_num_heads": config.mamba_num_heads, "mamba_groups": config.mamba_groups}
    for field, value in divisible.items():
        if value % tp:
            raise SpecError(f"{where}.tensor: {tp} does not divide model {field} = {value}")
    if layout.pipeline > config.num_layers:
        raise SpecError(f"{where}.pipeline: {layout.pipeline} stages for {config.num_layers} layers")
    if expert < 1 or (expert > 1 and (not config.moe_num_experts or config.moe_num_experts % expert or layout.data % expert)):
        raise SpecError(f"{where}.expert: {expert} must divide the experts ({config.moe_num_experts}) "
                        f"and the data-parallel size ({layout.data})")
    return {
        "tensor_model_parallel_size": tp,
        "pipeline_model_parallel_size": layout.pipeline,
        "context_parallel_size": layout.context,
        "expert_model_parallel_size": expert,
        "sequence_parallel": tp > 1,  # Megatron's norm for TP: activations outside the GEMMs are split too
        "use_distributed_optimizer": layout.sharding == "optimizer",
        "use_megatron_fsdp": layout.sharding == "fsdp",
        "data_parallel_size": layout.data,
    }
