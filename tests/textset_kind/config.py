"""A toy stage kind ("textset") that publishes its config's texts as a corpus: a dataset step for tests/gvendi/test_hook.py."""

from __future__ import annotations

from pydantic import Field

from factory.stage import StageConfig


class Config(StageConfig):
    texts: list[str] = Field(..., description="Documents to publish as a corpus")
