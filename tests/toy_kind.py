"""A toy stage kind, added the way README's "Adding a stage kind" says: this module and one registry entry.

It counts the words of a text file (at least `min_length` letters), adding the counts of a `previous`
step of its own kind when it has one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from factory.stage import Artifact, StageConfig, StepContext


class Config(StageConfig):
    source: str = Field(..., description="Text file to count", json_schema_extra={"external_input": True})
    min_length: int = Field(1, ge=1, description="Shortest word counted")


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    counts = Counter(w for w in Path(config.source).read_text().split() if len(w) >= config.min_length)
    if "previous" in inputs:
        counts.update(json.loads((inputs["previous"].path / "counts.json").read_text()))
    (output / "counts.json").write_text(json.dumps(counts, sort_keys=True))
    return {"words": float(sum(counts.values())), "distinct": float(len(counts))}
