"""What an import_model step costs (`factory plan`): the bytes it copies into the store, from its folder's safetensors
headers (measured at plan time: the folder is read, never its weights); no FLOPs."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost


def cost(step: Any, plan: PlanContext) -> StepCost:
    from factory.errors import InputError
    from factory.stages.import_model.source import inspect_source  # transformers and torch: only specs that import

    try:
        storage = plan.spec.storage
        info = inspect_source(step.config.source, step.name, step.config.hub_id, storage.endpoint_url, storage.region)
    except InputError as e:
        return plan.cost(step, note=f"not costed: {e}")
    return plan.cost(step, data={"parameters": float(info.params), "bytes": float(info.weight_bytes)},
                     measured=("parameters", "bytes"),
                     note=f"{info.architecture} ({info.dtype}); copies its folder, loads no weight")
