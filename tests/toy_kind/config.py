"""The toy kind's config."""

from __future__ import annotations

from pydantic import Field

from factory.stage import StageConfig


class Config(StageConfig):
    source: str = Field(..., description="Text file to count", json_schema_extra={"external_input": True})
    min_length: int = Field(1, ge=1, description="Shortest word counted")
