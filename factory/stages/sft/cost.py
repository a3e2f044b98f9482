"""What an sft step costs (`factory plan`): the shared training estimate on the model it fine-tunes, each row one
conversation counted at `seq_len`, the bound on its length (an upper bound: shorter conversations are padded only to
the longest of their micro-batch)."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.workload import trainer_cost


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    data = plan.upstream(step, "data")
    known = {k: data.data[k] for k in ("conversations",) if data is not None and k in data.data}
    return trainer_cost(plan, step, plan.model_of(step), seq_len=cfg.seq_len, data=known, estimated=True,
                        measured=tuple(k for k in known if data is not None and k in data.measured),
                        notes=(f"tokens: every conversation counted at seq_len {cfg.seq_len} (an upper bound)",))
