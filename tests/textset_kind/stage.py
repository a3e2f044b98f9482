"""The textset toy kind's run: its texts as corpus parts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from factory.documents import write_parts
from factory.stage import Artifact, StepContext
from tests.textset_kind.config import Config


def run(config: Config, inputs: Mapping[str, Artifact], output: Path, ctx: StepContext) -> dict[str, float]:
    write_parts(({"id": str(i), "text": t} for i, t in enumerate(config.texts)), output / "documents", per_part=100)
    return {"documents": float(len(config.texts))}
