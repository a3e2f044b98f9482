"""What a posttrain_data step costs (`factory plan`): its prompts, and the tokens a model teacher writes for them.

Prompts: the procedural sets' sizes, the task sets' sizes and the lines of the prompt files (a built-in task set
without a size, or a file this machine cannot read, is not counted); a published build's count when one measured it.
A model teacher writes `samples` solutions per prompt and reasoning mode, each counted at `generation.max_new_tokens`
(an upper bound; tool-integrated reasoning adds rounds, not counted) after a prompt of `PROMPT_TOKENS` (an estimate);
their FLOPs are counted when the teacher is the "teacher" checkpoint input (an endpoint's are the server's). The
procedural solver writes its traces without a model. With `budget_control`, its share of the mode-on solutions is
counted again as cut copies.
"""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.workload import PROMPT_TOKENS, count_records, generation_flops


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    m = plan.measured(step.name)
    files = count_records(list(cfg.prompts))
    prompts = (sum(p.size for p in cfg.procedural) + sum(t.size or 0 for t in cfg.task_sets) + (files or 0))
    heldout = sum(p.heldout_size for p in cfg.procedural) + (count_records(list(cfg.heldout_prompts)) or 0)
    data: dict[str, float] = {"prompts": m.get("prompts", prompts), "heldout_prompts": m.get("heldout", heldout)}
    measured = [k for k, metric in (("prompts", "prompts"), ("heldout_prompts", "heldout")) if metric in m]
    solutions = data["prompts"] * len(cfg.reasoning) * cfg.samples
    notes = []
    if "kept" in m:
        data["conversations"] = m["kept"]
        measured.append("conversations")
    else:
        data["conversations"] = data["prompts"] * len(cfg.reasoning) * cfg.keep_per_prompt
        notes.append("conversations: every prompt solved in every mode (an upper bound)")
    if cfg.budget_control is not None:  # cut copies of a share of the mode-on solutions, beside the full traces
        if "budget_control_written" in m:
            data["budget_copies"] = m["budget_control_written"]
            measured.append("budget_copies")
        else:
            data["budget_copies"] = data["prompts"] * cfg.keep_per_prompt * cfg.budget_control.fraction
            notes.append(f"budget copies: {cfg.budget_control.fraction:.0%} of the mode-on solutions (about; drawn by hash)")
    flops = None
    if cfg.teacher.is_model:
        new = cfg.generation.max_new_tokens
        data["generated"] = solutions * new
        notes.append(f"teacher solutions counted at max_new_tokens {new} (an upper bound)")
        if cfg.teacher.kind == "transformers" and cfg.teacher.model_dir is None and plan.upstream(step, "teacher"):
            flops = generation_flops(plan.model_of(step, "teacher"), solutions, PROMPT_TOKENS, new)
        else:
            notes.append("the teacher's FLOPs are not counted (its model is not a step of the spec)")
    return plan.cost(step, data=data, flops=flops, estimated=True, measured=tuple(measured), note="; ".join(notes),
                     **plan.timed(step.name, flops or 0.0))
