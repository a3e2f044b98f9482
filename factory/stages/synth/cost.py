"""What a synth step costs (`factory plan`): the tokens its generator writes, an estimate.

Documents: `max_docs`, or the corpus input's (measured documents, else its files); chunks per document: its share of
the corpus text over `chunk_size` (in characters, or tokens at `BYTES_PER_TOKEN`); tasks per document: the mean over
the five quality tiers of the tasks `tasks_by_tier` runs (tiers taken as equally common); every rewrite counted at
`generation.max_new_tokens` (an upper bound). The generator's model is not part of the spec, so its FLOPs are not
counted: a server's are its own.
"""

from __future__ import annotations

import math
from typing import Any

from factory.cost.estimate import PlanContext, StepCost
from factory.cost.workload import BYTES_PER_TOKEN
from factory.tiers import TIERS


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    corpus = plan.upstream(step, "corpus")
    known = corpus.data if corpus is not None else {}
    docs = known.get("documents", known.get("files"))
    if cfg.max_docs is not None:
        docs = min(docs, cfg.max_docs) if docs is not None else cfg.max_docs
    if docs is None:
        return plan.cost(step, estimated=True, note="corpus size unknown: generated tokens unknown")
    text = known.get("text_bytes", known.get("bytes"))
    chunk_bytes = cfg.chunk_size * (BYTES_PER_TOKEN if cfg.chunk_unit == "tokens" else 1)
    per_doc = text / known["documents" if "documents" in known else "files"] if text else chunk_bytes
    chunks = docs * max(1, math.ceil(per_doc / chunk_bytes))
    tasks = sum(len(cfg.tasks_by_tier.get(tier, ())) for tier in TIERS) / len(TIERS)
    generated = chunks * tasks * cfg.generation.max_new_tokens
    return plan.cost(step, data={"documents": docs, "prompts": chunks * tasks, "generated": generated,
                                 "text_bytes": generated * BYTES_PER_TOKEN},
                     estimated=True, note=f"generated tokens: {tasks:g} tasks per document (tiers equally common), "
                     f"each chunk at max_new_tokens {cfg.generation.max_new_tokens} (an upper bound); the generator's "
                     "FLOPs are not counted (its model is not in the spec)")
