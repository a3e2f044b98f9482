"""Gopher's quality and repetition rules (Rae et al. 2021) as settings, defaults datatrove's.

The prose filters (`factory.curate.filters`) and the math chain (`factory.curate.math.chain`) both apply them
through datatrove's Gopher filters, whose keyword arguments `thresholds()` gives:

    GopherQualityFilter(**GopherQuality().thresholds())
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from factory.stage import StageConfig


class GopherQuality(StageConfig):
    """Gopher quality rules, as datatrove's `GopherQualityFilter` applies them."""

    enabled: bool = Field(True, description="Apply the Gopher quality rules.")
    min_doc_words: int = Field(50, ge=0, description="Fewest words (non-symbol tokens) a document may have.")
    max_doc_words: int = Field(100_000, ge=1, description="Most words a document may have.")
    min_avg_word_length: float = Field(3, ge=0, description="Smallest mean word length, in characters.")
    max_avg_word_length: float = Field(10, ge=0, description="Largest mean word length, in characters.")
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="Most '#' and '...' symbols per word.")
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1, description="Largest share of lines that start with a bullet.")
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1, description="Largest share of lines that end with an ellipsis.")
    max_non_alpha_words_ratio: float = Field(0.8, ge=0, le=1, description="Smallest share of words with a letter (datatrove's name).")
    min_stop_words: int = Field(2, ge=0, description="Fewest English stop words (the, be, to, of, and, that, have, with).")

    def thresholds(self) -> dict[str, Any]:
        """datatrove's `GopherQualityFilter` keyword arguments."""
        return self.model_dump(exclude={"enabled", "content_hash"})


class GopherRepetition(StageConfig):
    """Gopher repetition rules: duplicated lines, paragraphs and n-grams, as datatrove's filter applies them."""

    enabled: bool = Field(True, description="Apply the Gopher repetition rules.")
    dup_line_frac: float = Field(0.3, ge=0, le=1, description="Largest share of lines that repeat an earlier line.")
    dup_para_frac: float = Field(0.3, ge=0, le=1, description="Largest share of paragraphs that repeat an earlier one.")
    dup_line_char_frac: float = Field(0.2, ge=0, le=1, description="Largest share of characters in repeated lines.")
    dup_para_char_frac: float = Field(0.2, ge=0, le=1, description="Largest share of characters in repeated paragraphs.")
    top_n_grams: list[tuple[int, float]] = Field(
        [(2, 0.2), (3, 0.18), (4, 0.16)],
        description="(n, max share of characters) covered by the most frequent n-gram.")
    dup_n_grams: list[tuple[int, float]] = Field(
        [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)],
        description="(n, max share of characters) covered by repeated n-grams.")

    def thresholds(self) -> dict[str, Any]:
        """datatrove's `GopherRepetitionFilter` keyword arguments (its n-gram lists are tuples)."""
        out = self.model_dump(exclude={"enabled", "content_hash"})
        return out | {k: tuple(map(tuple, out[k])) for k in ("top_n_grams", "dup_n_grams")}
