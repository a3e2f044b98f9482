"""The curate stage's config (light: loading a spec imports it; the run imports the rest)."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, model_validator

from factory.curate.decontaminate import DecontaminationConfig
from factory.curate.dedup.fuzzy import FuzzyDedupConfig
from factory.curate.dedup.semantic import SemanticDedupConfig
from factory.curate.gopher import GopherQuality, GopherRepetition
from factory.curate.limits import (
    DEFAULT_EXTRACT_MEMORY_MB,
    DEFAULT_MAX_EXPANSION_RATIO,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_MEMBER_BYTES,
    DEFAULT_MAX_PAGE_BYTES,
    DEFAULT_MAX_RECORDS_PER_KIB,
)
from factory.curate.math import MathConfig
from factory.curate.math.config import MathChainConfig
from factory.curate.quality.ensemble import N_TIERS
from factory.stage import StageConfig, no_effect

MIN_CALIBRATION_DOCS = 100  # documents a crawl needs before its own tier grids replace the ensemble's


class MathExtraction(MathConfig):
    """Math-aware extraction (Nemotron-CC-Math) for pages with equations: `factory.curate.math`'s settings plus a switch."""

    enabled: bool = Field(True, description="Send pages with equations (MathML, MathJax, KaTeX, LaTeX) through the math path.")
    chain: MathChainConfig = Field(
        MathChainConfig(), description="The filters math pages go through instead of the prose heuristics (factory.curate.math.chain).")


class QualityStep(StageConfig):
    """Score documents with a trained quality ensemble (the `quality` stage's artifact, or `quality_model`)."""

    enabled: bool = Field(False, description="Score documents into 20 quality buckets and 5 tiers.")
    min_tier: int = Field(0, ge=0, le=N_TIERS - 1, description="Drop documents below this tier (0 keeps all, as Nemotron-CC).")
    calibrate_on_corpus: bool = Field(
        True, description="Recompute each classifier's percentile grid on the corpus being scored, as Nemotron-CC "
                          f"buckets its own crawl, when it has at least {MIN_CALIBRATION_DOCS} documents; else keep the ensemble's grids.")
    threads: int = no_effect(1, "OpenMP threads for scoring; 1 is fastest on small data (thread start-up dominates).")


class Config(StageConfig):
    """Curate raw web pages into a text corpus: extraction, language id, heuristics, dedup, quality, decontamination."""

    sources: list[str] = Field(
        ..., min_length=1, json_schema_extra={"external_input": True},
        description="Files or folders of .html/.htm/.warc[.gz]/.wet[.gz]/.jsonl[.gz] inputs (folders searched recursively).")
    languages: list[str] = Field(["en"], description="ISO 639-1 codes of the languages to keep (py3langid labels).")
    min_language_score: float = Field(
        0.65, ge=0, le=1, description="Smallest py3langid probability of the detected language for a page to stay.")
    extractor: Literal["resiliparse_rules", "trafilatura", "resiliparse", "justext"] = Field(
        "resiliparse_rules", description="Main-text extractor that strips navigation, banners and footers (bench/curate.py measures them).")
    extract_timeout_s: float = Field(
        30.0, gt=0, description="Per-page extraction time limit; a page that takes longer is dropped (timeout), not waited for.")
    extract_memory_mb: int | None = Field(
        DEFAULT_EXTRACT_MEMORY_MB, ge=64,
        description="Memory one page's extraction may add to its worker process (Linux: RLIMIT_AS); a page past it is "
                    "dropped (out_of_memory). None: no limit.")
    max_page_bytes: int = Field(
        DEFAULT_MAX_PAGE_BYTES, ge=1024, description="Input units (page, record, JSONL line) larger than this are skipped as too_large.")
    max_header_bytes: int = Field(
        DEFAULT_MAX_HEADER_BYTES, ge=1024, description="Largest WARC header block; a larger one is skipped as header_too_large.")
    max_member_bytes: int = Field(
        DEFAULT_MAX_MEMBER_BYTES, ge=1024,
        description="Most bytes of one gzip member held whole, its CRC checked, before its records are read (never below "
                    "max_page_bytes + 2 x max_header_bytes); a larger member (a whole WARC gzipped as one) is read as it inflates.")
    max_file_bytes: int = Field(
        DEFAULT_MAX_FILE_BYTES, ge=1024,
        description="Most bytes one input file may expand to; the rest of a file past it is skipped, counted once as too_large.")
    max_expansion_ratio: float = Field(
        DEFAULT_MAX_EXPANSION_RATIO, ge=2,
        description="Most expanded bytes per compressed byte of a gzip member, and of a whole file, past one unit's worth: "
                    "a gzip bomb stops there (too_large) and reading resumes at the next member.")
    max_records_per_kib: int = Field(
        DEFAULT_MAX_RECORDS_PER_KIB, ge=1,
        description="Most input records (lines, WARC records, skips) a file may hold per KiB on disk, never fewer than "
                    "100,000: past it the rest of the file is skipped, counted once as too_many_records.")
    max_error_fraction: float = Field(
        0.01, ge=0, le=1,
        description="The stage fails when more than this share of input records are damaged or break a parser or step.")
    math: MathExtraction = Field(MathExtraction(), description="Math-aware extraction for pages with equations.")
    gopher_repetition: GopherRepetition = Field(GopherRepetition(), description="Gopher repetition filter settings.")
    gopher_quality: GopherQuality = Field(GopherQuality(), description="Gopher quality filter settings.")
    c4_quality: bool = Field(False, description="Also apply datatrove's C4 quality filter (drops and trims lines).")
    fineweb_quality: bool = Field(False, description="Also apply datatrove's FineWeb quality filter (line punctuation, short lines).")
    exact_dedup: bool = Field(True, description="Drop pages whose normalised text equals an earlier page's.")
    fuzzy_dedup: FuzzyDedupConfig = Field(FuzzyDedupConfig(), description="MinHash LSH near-duplicate removal.")
    semantic_dedup: SemanticDedupConfig = Field(
        SemanticDedupConfig(enabled=False), description="SemDeDup on sentence embeddings (off by default: it embeds every document).")
    quality: QualityStep = Field(QualityStep(), description="Quality-classifier ensemble: buckets and tiers in metadata.")
    quality_model: str | None = Field(
        None, json_schema_extra={"external_input": True},
        description="Folder of an ensemble trained elsewhere (a quality-stage artifact) to score with, when there is no `quality` input.")
    decontamination: DecontaminationConfig = Field(DecontaminationConfig(), description="Evaluation-set n-gram removal.")
    decontamination_sets: list[str] = Field(
        [], json_schema_extra={"external_input": True},
        description="Evaluation-set files or folders (.txt one item a line, .jsonl, .json) to decontaminate against. "
                    "In a spec, the evaluate stage's `task_files` are added here.")
    shard_size: int = Field(10_000, gt=0, description="Documents per output part (documents/part-NNNNN.jsonl.gz).")
    executor: Literal["local", "ray"] = no_effect(
        "local", "Where the per-page steps run: datatrove's local processes, or a Ray cluster (pip install 'ray[default]').")
    ray_address: str | None = no_effect(None, "Ray cluster address for executor 'ray' (None: start or join a local one).")
    workers: int = no_effect(1, "Parallel datatrove tasks for the per-page steps; the output does not depend on it.")

    @model_validator(mode="after")
    def _quality_used(self) -> Config:
        # whether an ensemble will come (the `quality` input) is the spec's to know; this checks settings that
        # would silently do nothing with scoring off
        if not self.quality.enabled:
            if self.quality.min_tier > 0:
                raise ValueError("quality.min_tier drops documents by tier, which needs quality.enabled: true")
            if self.quality_model is not None:
                raise ValueError("quality_model is set but quality.enabled is false (enable quality scoring or remove quality_model)")
        return self

    def required_inputs(self) -> set[str]:
        """Quality scoring without an ensemble folder needs the `quality` stage's artifact."""
        return {"quality"} if self.quality.enabled and self.quality_model is None else set()


def spec_defaults(config: dict[str, Any], spec: Any) -> dict[str, Any]:
    """The factory must not train on what it evaluates on: every file an evaluating step reads (its task files,
    multiple-choice files and file benchmarks) joins this step's decontamination sets (the built-in sets, built-in
    task files and HumanEval are there already, through `builtin_eval_items`)."""
    sets = config.get("decontamination_sets", [])
    if not spec.evaluated_files or not isinstance(sets, list):
        return config  # anything not a list is left to the field validators to report
    listed = {os.path.normpath(s) for s in sets if isinstance(s, str)}
    missing = [f for f in spec.evaluated_files if os.path.normpath(f) not in listed]
    return {**config, "decontamination_sets": [*sets, *missing]} if missing else config
