"""A toy stage kind, added the way README's "Adding a stage kind" says: this package (`config.py`, `run.py`) and one
registry entry.

It counts the words of a text file (at least `min_length` letters), adding the counts of a `previous`
step of its own kind when it has one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from factory.stage import Artifact, StepContext
from tests.toy_kind.config import Config


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    counts = Counter(w for w in Path(config.source).read_text().split() if len(w) >= config.min_length)
    if "previous" in inputs:
        counts.update(json.loads((inputs["previous"].path / "counts.json").read_text()))
    (output / "counts.json").write_text(json.dumps(counts, sort_keys=True))
    return {"words": float(sum(counts.values())), "distinct": float(len(counts))}
