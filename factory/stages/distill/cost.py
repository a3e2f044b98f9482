"""What a distill step costs (`factory plan`): the shared training estimate on the student, plus the teacher's
forward over every trained token and the teacher's weights beside the student's training state."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.workload import forward_flops, trained_tokens, trainer_cost, weight_bytes


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    teacher = plan.model_of(step, "teacher")
    tokens = trained_tokens(plan, step, cfg.seq_len)
    return trainer_cost(plan, step, plan.model_of(step, "student"), seq_len=cfg.seq_len,
                        extra_flops={"teacher": forward_flops(teacher, tokens, cfg.seq_len)},
                        extra_memory={"teacher": weight_bytes(teacher)})
