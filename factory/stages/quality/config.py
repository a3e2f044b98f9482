"""The quality stage's config (light: loading a spec imports it; the run imports the rest)."""

from __future__ import annotations

from pydantic import Field

from factory.curate.math.classifier import MathClassifierConfig
from factory.curate.quality.ensemble import QualityConfig
from factory.stage import StageConfig, no_effect

MIN_REFERENCE_DOCS = 10


class Config(StageConfig):
    """Train the quality-classifier ensemble: reference-quality text against synthesised junk."""

    train: QualityConfig = Field(QualityConfig(), description="The ensemble's classifiers, their settings, tiers and seed.")
    reference: list[str] = Field(
        [], json_schema_extra={"external_input": True},
        description="Files or folders of reference-quality text (.txt/.md/.rst/.html/.htm), folders searched recursively.")
    stdlib_reference: bool = Field(True, description="Add the Python standard library's docstrings to the reference texts.")
    max_reference_docs: int = Field(2000, ge=10, description="Most reference (positive) documents used; `reference` files come first.")
    math: MathClassifierConfig = Field(
        MathClassifierConfig(), description="The math quality classifier (after FineMath) trained into math/ for curate's math pages.")
    threads: int = no_effect(
        1, "OpenMP threads for training; 1 is fastest on small data (thread start-up dominates).")
