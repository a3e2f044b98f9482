"""What an opd step costs (`factory plan`): the student's sampling and the shared training estimate on the student,
plus the teacher's forward over every sampled completion and its weights beside the student's training state.

Per step: `micro_batch_size` x `grad_accum` completions sampled by the student at up to `max_new_tokens`, after a
prompt of `PROMPT_TOKENS` (an estimate): every completion is counted at its full length limit, an upper bound.
"""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.workload import PROMPT_TOKENS, forward_flops, generation_flops, trainer_cost, weight_bytes


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    student, teacher = plan.model_of(step), plan.model_of(step, "teacher")
    length = PROMPT_TOKENS + cfg.max_new_tokens
    samples = cfg.samples_per_step * cfg.steps
    return trainer_cost(plan, step, student, seq_len=length, estimated=True,
                        extra_flops={"generation": generation_flops(student, samples, PROMPT_TOKENS, cfg.max_new_tokens),
                                     "teacher": forward_flops(teacher, samples * length, length)},
                        extra_memory={"teacher": weight_bytes(teacher)},
                        data={"generated": samples * cfg.max_new_tokens},
                        notes=(f"completions counted at a {PROMPT_TOKENS}-token prompt (an estimate) plus their length limit",))
