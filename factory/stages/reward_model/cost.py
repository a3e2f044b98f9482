"""What a reward_model step costs (`factory plan`): the shared training estimate on the backbone it trains (the
regression head is a rounding error), one record per row counted at `seq_len`, the bound on its length."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.workload import count_records, trainer_cost


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    records = count_records([cfg.data])
    known = {"records": records} if records is not None else {}
    return trainer_cost(plan, step, plan.model_of(step), seq_len=cfg.seq_len, data=known, estimated=True,
                        measured=tuple(known),
                        notes=(f"tokens: every record counted at seq_len {cfg.seq_len} (an upper bound)",))
