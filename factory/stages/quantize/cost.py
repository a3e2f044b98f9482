"""What a quantize step costs (`factory plan`): the forward passes of PTQ, an estimate.

The BF16 model's forward over the calibration windows; then the perplexity windows and the cloze sets' items
(each counted at `task_seq_len`, an upper bound) scored on the BF16 model and on every variant as loaded back (the
compressed-tensors exports too). The mixed variant's sensitivity passes (a few windows per linear) are not counted.
Memory: the FP32 checkpoint and one variant loaded back beside it.

Sizes of the exported variants (`<variant>_bytes`, the compressed-tensors twins the same as theirs): the linears of
the Mamba, attention, MLP and shared-expert layers at their format's bytes per weight, block scales included (FP8 1,
NVFP4 0.5625, mixed its `bits_budget` / 8, an upper bound), every other tensor in BF16; routed experts stay BF16.
"""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, PlannedModel, StepCost
from factory.cost.param_count import parameter_counts
from factory.cost.workload import count_records, forward_flops, weight_bytes
from factory.tasks.sets import builtin_path

# parameter_counts' parts whose weights are quantized linears (their conv1d, norm and per-head vectors are a rounding error)
QUANTIZED_PARTS = ("mamba", "attention", "mlp", "moe_shared")
BYTES_PER_WEIGHT = {"fp8": 1.0, "nvfp4": 0.5 + 1 / 16}


def variant_bytes(model: PlannedModel, variants: list[str], bits_budget: float) -> dict[str, int]:
    """Estimated weight bytes of each exported variant (see the module docstring)."""
    counts = parameter_counts(model.config, model.vocab_size)
    quantized = sum(counts.by_part.get(p, 0) for p in QUANTIZED_PARTS)
    rest = 2 * (counts.total - quantized)
    per_weight = {**BYTES_PER_WEIGHT, "mixed": bits_budget / 8}
    return {v: round(rest + quantized * per_weight[v]) for v in variants}


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    model = plan.model_of(step)
    scored = 1 + len(cfg.variants) + (sum(v in ("fp8", "nvfp4") for v in cfg.variants) if cfg.compressed_tensors else 0)
    items = count_records([str(builtin_path(t)) for t in cfg.tasks] + list(cfg.task_files))
    work = {"calibration": forward_flops(model, cfg.calibration_samples * cfg.seq_len, cfg.seq_len),
            "perplexity": scored * forward_flops(model, cfg.eval_samples * cfg.seq_len, cfg.seq_len),
            "tasks": scored * forward_flops(model, (items or 0) * cfg.task_seq_len, cfg.task_seq_len)}
    flops = sum(work.values())
    memory = {"weights": weight_bytes(model), "variant": weight_bytes(model)}
    data = {"scored_models": scored, "calibration_tokens": cfg.calibration_samples * cfg.seq_len,
            **{f"{v}_bytes": b for v, b in variant_bytes(model, cfg.variants, cfg.bits_budget).items()}}
    notes = ["FLOPs " + ", ".join(f"{k} {v / flops:.0%}" for k, v in work.items())]
    if items is None:
        notes.append("a task file is not readable here: its items are not counted")
    if "mixed" in cfg.variants:
        notes.append("the mixed variant's sensitivity passes are not counted")
    return plan.cost(step, data=data, flops=flops, memory=memory, memory_total=sum(memory.values()), estimated=True,
                     note="; ".join(notes), **plan.timed(step.name, flops))
