"""Settings of the math-aware extractor."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

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


class MathQualityRules(StageConfig):
    """Gopher's quality rules measured on a math page's prose (`mask.prose_view`: LaTeX and code masked), with
    thresholds for math: pages that explain formulas in words are short of prose and long on symbols."""

    enabled: bool = Field(True, description="Apply the quality rules to math pages' prose.")
    min_doc_words: int = Field(50, ge=0, description="Fewest words of prose (inline formulas count as one word each).")
    max_doc_words: int = Field(100_000, ge=1, description="Most words of prose.")
    min_avg_word_length: float = Field(3, ge=0, description="Smallest mean word length of the prose, in characters.")
    max_avg_word_length: float = Field(10, ge=0, description="Largest mean word length of the prose, in characters.")
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="Most '#' and '...' symbols per prose word.")
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1, description="Largest share of prose lines that start with a bullet.")
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1, description="Largest share of prose lines ending with an ellipsis.")
    max_non_alpha_words_ratio: float = Field(
        0.7, ge=0, le=1, description="Smallest share of prose words with a letter (datatrove's name; prose pages use 0.8).")
    min_stop_words: int = Field(2, ge=0, description="Fewest English stop words in the prose.")


class MathRepetitionRules(StageConfig):
    """Gopher's repetition rules on a math page's prose, at twice the prose thresholds: reference pages of
    functions repeat their phrasing ("The function is defined as ...") from entry to entry."""

    enabled: bool = Field(True, description="Apply the repetition rules to math pages' prose.")
    dup_line_frac: float = Field(0.6, ge=0, le=1, description="Largest share of lines that repeat an earlier line.")
    dup_para_frac: float = Field(0.6, ge=0, le=1, description="Largest share of paragraphs that repeat an earlier one.")
    dup_line_char_frac: float = Field(0.4, ge=0, le=1, description="Largest share of characters in repeated lines.")
    dup_para_char_frac: float = Field(0.4, ge=0, le=1, description="Largest share of characters in repeated paragraphs.")
    top_n_grams: list[tuple[int, float]] = Field(
        [(2, 0.4), (3, 0.36), (4, 0.32)], description="(n, max share of characters) covered by the most frequent n-gram.")
    dup_n_grams: list[tuple[int, float]] = Field(
        [(5, 0.3), (6, 0.28), (7, 0.26), (8, 0.24), (9, 0.22), (10, 0.2)],
        description="(n, max share of characters) covered by repeated n-grams.")


class MathCleanup(StageConfig):
    """Optional LLM cleanup of math pages (Nemotron-CC-Math): a model rewrites each page's extracted text into
    clean text with LaTeX, through the generator interface; a rewrite that loses an equation is not used."""

    enabled: bool = Field(False, description="Rewrite math pages with an LLM before dedup (off: no model needed).")
    kind: Literal["transformers", "openai"] = Field(
        "transformers", description="'transformers': a local model folder; 'openai': an OpenAI-compatible server.")
    model_dir: str | None = Field(
        None, json_schema_extra={"external_input": True}, description="transformers: save_pretrained folder of the model.")
    base_url: str | None = Field(None, description="openai: server address, e.g. http://vllm:8000.")
    model: str | None = Field(None, description="openai: model name the server serves.")
    api_key_env: str = no_effect("OPENAI_API_KEY", "openai: environment variable holding the API key, if any.")
    prompt_file: str | None = Field(
        None, json_schema_extra={"external_input": True},
        description="Prompt template with a {text} slot; default: the packaged factory/curate/math/prompts/cleanup.txt.")
    max_chars: int = Field(6000, ge=100, description="Pages longer than this are cut at paragraph ends into chunks.")
    max_new_tokens: int = Field(2048, ge=1, description="Most tokens generated per chunk (greedy decoding).")
    keep_equations: float = Field(
        1.0, ge=0, le=1, description="Smallest share of a chunk's equations its rewrite must keep; else the chunk stays as extracted.")
    batch_size: int = no_effect(8, "Prompts per forward pass (transformers) or per request batch (openai).")

    @model_validator(mode="after")
    def _reachable(self) -> MathCleanup:
        if self.enabled and self.kind == "transformers" and not self.model_dir:
            raise ValueError("cleanup with kind 'transformers' needs model_dir (a save_pretrained folder)")
        if self.enabled and self.kind == "openai" and not (self.base_url and self.model):
            raise ValueError("cleanup with kind 'openai' needs base_url and model")
        return self


class MathChainConfig(StageConfig):
    """What happens to a page after the math path extracted it, instead of the prose heuristics (Nemotron-CC-Math):
    language id and Gopher-style rules on its prose with LaTeX and code masked, optional LLM cleanup, then the
    usual dedup and decontamination, and, when quality scoring is on, the math classifier of the quality artifact."""

    enabled: bool = Field(
        True, description="Send math pages through this chain; false sends them through the prose filters as before.")
    quality: MathQualityRules = Field(MathQualityRules(), description="Quality rules on the prose of math pages.")
    repetition: MathRepetitionRules = Field(MathRepetitionRules(), description="Repetition rules on the prose of math pages.")
    min_math_score: float = Field(
        0.5, ge=0, le=1, description="With quality scoring on: math pages the math classifier rates below this probability are dropped.")
    cleanup: MathCleanup = Field(MathCleanup(), description="Optional LLM cleanup of math pages.")
