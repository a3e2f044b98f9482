"""Settings of the math-aware extractor."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from factory.curate.gopher import GopherQuality, GopherRepetition
from factory.generate.settings import GeneratorSettings
from factory.stage import StageConfig, no_effect


class MathConfig(StageConfig):
    """How math pages are turned into text."""

    renderer: Literal["lynx", "builtin"] = Field(
        "builtin", description="HTML-to-text renderer: 'builtin' (lxml, pure Python, the same text on every machine) or "
        "'lynx' (layout-aware `lynx -dump`, as Nemotron-CC-Math; needs the system package lynx).")
    lynx_width: int = Field(
        1024, ge=40, le=1024, description="Columns lynx lays text out in; wide so paragraphs are not hard-wrapped.")
    timeout_s: float = no_effect(30.0, "Seconds lynx may spend on one page; a page that runs past it is skipped.")
    drop_boilerplate: bool = Field(
        True, description="Remove nav/header/footer/aside and elements whose role/class/id says navigation.")
    min_chars: int = Field(
        20, ge=0, description="Pages whose extracted text is shorter than this many characters give None.")


    def required_tools(self) -> dict[str, str]:
        """System programs these settings need, by the field that asks for them (checked when a spec loads)."""
        return {"renderer": "lynx"} if self.renderer == "lynx" else {}


# Gopher's rules on a math page's prose (`mask.prose_view`) with thresholds for math, measured on the 35 math pages
# of python-mpmath-doc and libdune-geometry-doc that the math path extracts: pages that explain formulas in words
# are short of prose and long on symbols (datatrove's max_non_alpha_words_ratio 0.8 drops 11 of them, 0.7 drops 6),
# and reference pages of functions repeat their phrasing ("The function is defined as ...") from entry to entry
# (datatrove's repetition thresholds drop 11, twice them 4).
MATH_QUALITY = GopherQuality(max_non_alpha_words_ratio=0.7)
MATH_REPETITION = GopherRepetition(
    dup_line_frac=0.6, dup_para_frac=0.6, dup_line_char_frac=0.4, dup_para_char_frac=0.4,
    top_n_grams=[(2, 0.4), (3, 0.36), (4, 0.32)], dup_n_grams=[(5, 0.3), (6, 0.28), (7, 0.26), (8, 0.24), (9, 0.22), (10, 0.2)])


class MathCleanup(StageConfig):
    """Optional LLM cleanup of math pages (Nemotron-CC-Math): a model rewrites each page's extracted text into
    clean text with LaTeX, through the generator interface; a rewrite that loses an equation is not used."""

    enabled: bool = Field(False, description="Rewrite math pages with an LLM before dedup (off: no model needed).")
    generator: GeneratorSettings = Field(
        default_factory=GeneratorSettings, description="Which model rewrites the pages (model_dir, or an OpenAI-compatible server).")
    prompt_file: str | None = Field(
        None, json_schema_extra={"external_input": True},
        description="Prompt template with one {document} slot; default: the packaged factory/curate/math/prompts/cleanup.txt.")
    max_chars: int = Field(6000, ge=100, description="Pages longer than this are cut at paragraph ends into chunks.")
    max_new_tokens: int = Field(2048, ge=1, description="Most tokens generated per chunk (greedy decoding).")
    keep_equations: float = Field(
        1.0, ge=0, le=1, description="Smallest share of a chunk's equations its rewrite must keep; else the chunk stays as extracted.")

    @model_validator(mode="before")
    @classmethod
    def _generator_fields_moved(cls, data: Any) -> Any:
        moved = [k for k in _GENERATOR_FIELDS if isinstance(data, dict) and k in data]
        if moved:
            raise ValueError(f"{', '.join(moved)}: the cleanup's model is set in cleanup.generator now "
                             f"(generator: {{{', '.join(f'{k}: ...' for k in moved)}}})")
        return data

    @model_validator(mode="after")
    def _reachable(self) -> MathCleanup:
        if self.enabled and self.generator.kind == "transformers" and not self.generator.model_dir:
            raise ValueError("cleanup with generator kind 'transformers' needs generator.model_dir (a save_pretrained folder)")
        return self


_GENERATOR_FIELDS = ("kind", "model_dir", "base_url", "model", "api_key_env", "batch_size")


class MathChainConfig(StageConfig):
    """What happens to a page after the math path extracted it, instead of the prose heuristics (Nemotron-CC-Math):
    language id and Gopher-style rules on its prose with LaTeX and code masked, optional LLM cleanup, then the
    usual dedup and decontamination, and, when quality scoring is on, the math classifier of the quality artifact."""

    enabled: bool = Field(
        True, description="Send math pages through this chain; false sends them through the prose filters as before.")
    quality: GopherQuality = Field(
        MATH_QUALITY, description="Gopher's quality rules on the prose of math pages (LaTeX and code masked, inline "
        "formulas one word each).")
    repetition: GopherRepetition = Field(MATH_REPETITION, description="Gopher's repetition rules on the prose of math pages.")
    min_math_score: float = Field(
        0.5, ge=0, le=1, description="With quality scoring on: math pages the math classifier rates below this probability are dropped.")
    cleanup: MathCleanup = Field(MathCleanup(), description="Optional LLM cleanup of math pages.")
