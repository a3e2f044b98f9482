"""What a quality step costs (`factory plan`): the documents its classifiers train on, reference texts and as many
synthesised junk ones (at most `max_reference_docs` each), as a published build counted them when one did."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    m = plan.measured(step.name)
    if "reference_docs" in m and "junk_docs" in m:
        data = {"documents": m["reference_docs"] + m["junk_docs"]}
        return plan.cost(step, data=data, measured=tuple(data))
    return plan.cost(step, data={"documents": 2 * cfg.max_reference_docs}, estimated=True,
                     note=f"documents: {cfg.max_reference_docs} reference texts (at most) and as many junk ones")
