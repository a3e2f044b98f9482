"""What a release step costs (`factory plan`): the weights it writes (BF16, the checkpoint's rounded) and what serving
the released model takes: weights and KV cache in BF16, Mamba states in FP32, batch 1, at the plan's serving context
(default: the longest context the model declares)."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.memory import GIB, serving_memory
from factory.cost.workload import max_context, weight_bytes


def cost(step: Any, plan: PlanContext) -> StepCost:
    model = plan.model_of(step)
    weights = weight_bytes(model, "bf16")
    data: dict[str, float] = {"weights_bytes": weights}
    note = ""
    ctx = plan.context or max_context(model)
    if ctx:
        serve = serving_memory(model.config, ctx, 1, vocab_size=model.vocab_size)
        data.update(serve_context=ctx, serve_memory=serve.total)
        unit, scale = ("GiB", GIB) if serve.total >= GIB else ("MiB", 2**20)
        note = (f"serving at {ctx} tokens, batch 1: {serve.total / scale:.3g} {unit} (weights {serve.weights / scale:.3g}, "
                f"KV cache {serve.kv_cache / scale:.3g}, Mamba states {(serve.mamba_conv + serve.mamba_ssm) / scale:.3g})")
    return plan.cost(step, data=data, memory={"weights": weights}, memory_total=weights, note=note)
