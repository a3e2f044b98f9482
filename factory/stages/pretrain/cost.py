"""What a pretrain step costs (`factory plan`): the shared training estimate on its model and token windows, every
row a full `seq_len` window. Continued pretraining (an `init` input) trains the model wired there, with its shape."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, PlannedModel, StepCost
from factory.cost.workload import trainer_cost


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    model = plan.model_of(step, "init") if "init" in step.inputs else PlannedModel(cfg.model, plan.vocab_of(step))
    return trainer_cost(plan, step, model, seq_len=cfg.seq_len)
