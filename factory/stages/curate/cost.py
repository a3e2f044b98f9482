"""What a curate step costs (`factory plan`): the size of its sources, as listed on this machine, and the documents
and text a published build of the step kept and the time it took (measured), which tokenize and synth plan from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.cost.estimate import PlanContext, StepCost


def source_size(sources: list[str]) -> tuple[int, int] | None:
    """Files and bytes of local `sources` (files or folders, searched recursively); None when one is not local."""
    files = total = 0
    for src in sources:
        p = Path(src).expanduser()
        if "://" in src or not p.exists():
            return None
        for f in [p] if p.is_file() else p.rglob("*"):
            if f.is_file():
                files += 1
                total += f.stat().st_size
    return files, total


def cost(step: Any, plan: PlanContext) -> StepCost:
    cfg = step.config
    size = source_size(list(cfg.sources))
    data: dict[str, float] = {"files": size[0], "bytes": size[1]} if size else {}
    m = plan.measured(step.name)
    measured = {"documents_in": m.get("docs_in"), "documents": m.get("docs_out"), "text_bytes": m.get("chars_out")}
    measured = {k: v for k, v in measured.items() if v is not None}
    notes = [] if size else ["sources not readable here: size unknown"]
    if "text_bytes" not in measured:
        notes.append("text kept unknown until a build has measured it (tokenize plans from the raw bytes)")
    seconds = m.get("seconds.total")
    return plan.cost(step, data={**data, **measured}, measured=tuple(measured) + (("time",) if seconds else ()),
                     hours=seconds / 3600 if seconds else None, note="; ".join(notes))
