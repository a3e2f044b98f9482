"""What a quantize step costs (`factory plan`): the forward passes of PTQ, an estimate.

The BF16 model's forward over the calibration windows; then the perplexity windows and the cloze sets' items
(each counted at `task_seq_len`, an upper bound) scored on the BF16 model and on every variant as loaded back (the
compressed-tensors exports too). The mixed variant's sensitivity passes (a few windows per linear) are not counted.
Memory: the FP32 checkpoint and one variant loaded back beside it.
"""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.workload import count_records, forward_flops, weight_bytes
from factory.tasks.sets import builtin_path


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
    data = {"scored_models": scored, "calibration_tokens": cfg.calibration_samples * cfg.seq_len}
    notes = ["FLOPs " + ", ".join(f"{k} {v / flops:.0%}" for k, v in work.items())]
    if items is None:
        notes.append("a task file is not readable here: its items are not counted")
    if "mixed" in cfg.variants:
        notes.append("the mixed variant's sensitivity passes are not counted")
    return plan.cost(step, data=data, flops=flops, memory=memory, memory_total=sum(memory.values()), estimated=True,
                     note="; ".join(notes), **plan.timed(step.name, flops))
