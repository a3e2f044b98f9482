"""What an import_model step costs (`factory plan`): the bytes it copies into the store, from its folder's safetensors
headers (measured at plan time: the folder is read, never its weights); no FLOPs. Where `factory.cost` knows the
architecture (NemotronH and the dense decoders of `factory.cost.shape.DENSE_DECODERS`), the step also plans the
imported model's shape, which every later step costs with; elsewhere later steps say they are not costed, rather
than cost the spec's own model."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, PlannedModel, StepCost
from factory.cost.shape import as_shape


def cost(step: Any, plan: PlanContext) -> StepCost:
    from factory.errors import InputError
    from factory.stages.import_model.source import inspect_source  # transformers and torch: only specs that import

    try:
        storage = plan.spec.storage
        info = inspect_source(step.config.source, step.name, step.config.hub_id, storage.endpoint_url, storage.region)
    except InputError as e:
        return plan.cost(step, note=f"not costed: {e}")
    note = f"{info.architecture} ({info.dtype}); copies its folder, loads no weight"
    try:
        model = PlannedModel(as_shape(info.config, info.vocab_rows), info.vocab_rows)
    except TypeError:
        model = None
        note += f"; factory.cost has no formulas for {info.model_type}, so later steps are not costed"
    return plan.cost(step, data={"parameters": float(info.params), "bytes": float(info.weight_bytes)},
                     measured=("parameters", "bytes"), note=note, model=model)
