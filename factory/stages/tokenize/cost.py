"""What a tokenize step costs (`factory plan`): the tokens it writes, as a published build of the step counted them,
else estimated from the text its corpus inputs hold at `BYTES_PER_TOKEN`."""

from __future__ import annotations

from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.workload import BYTES_PER_TOKEN


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    m = plan.measured(step.name)
    if "tokens_train" in m:
        valid = m.get("tokens_valid", 0.0)
        data = {"tokens": m["tokens_train"] + valid, "valid_tokens": valid}
        return plan.cost(step, data=data, measured=tuple(data), vocab_size=int(m.get("vocab_size", cfg.vocab_size)))
    text, raw = 0.0, False
    for input_name in ("corpus", "synthetic"):
        up = plan.upstream(step, input_name)
        if up is None:
            continue
        if "text_bytes" in up.data:
            text += up.data["text_bytes"]
        elif "bytes" in up.data:  # raw pages: markup and what curation drops included
            text, raw = text + up.data["bytes"], True
    if not text:
        return plan.cost(step, estimated=True, vocab_size=cfg.vocab_size, note="corpus size unknown: tokens unknown")
    tokens = text / BYTES_PER_TOKEN
    note = f"tokens ~ text bytes / {BYTES_PER_TOKEN:g}" + (" (raw page bytes: an upper bound)" if raw else "")
    return plan.cost(step, data={"tokens": tokens, "valid_tokens": tokens * cfg.valid_fraction}, estimated=True,
                     vocab_size=cfg.vocab_size, note=note)
