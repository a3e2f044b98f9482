"""Documents per extraction path through the curate stage: math pages and prose pages, in, kept, dropped per step.

The per-page steps already see one path each (the math chain sees only math pages, the prose filters only
the rest), so their drops and reasons are the path's. The corpus-level steps (dedup, decontamination, quality)
see both; `PathTally` counts each path before and after each of them.

    tally = PathTally(docs)            # after the per-page steps
    docs = dedup(docs); tally.step("exact_dedup", docs)
    stats["paths"] = tally.summary(extraction_paths, removed, reasons)

A page that fails extraction has no path yet; it is counted only under the `extraction` step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

MATH_PATH = "math"  # the `metadata["extraction"]` of a page the math path extracted
PATHS = ("math", "prose")
# per-page steps of each path (the names the stage gives them in stats.json)
PER_PAGE = {"math": ("math_filters",),
            "prose": ("language", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")}


def is_math(doc_or_metadata) -> bool:
    """Whether a document (or its metadata) took the math extraction path."""
    metadata = doc_or_metadata if isinstance(doc_or_metadata, dict) else doc_or_metadata.metadata
    return metadata.get("extraction") == MATH_PATH


def path_of(doc) -> str:
    """'math' for a page the math path extracted, else 'prose' (any other extractor, or text passed through)."""
    return "math" if is_math(doc) else "prose"


class PathTally:
    """Per-path document counts through the corpus-level steps."""

    def __init__(self, docs: Iterable):
        self.current = Counter(path_of(d) for d in docs)
        self.after_pages = dict(self.current)
        self.removed: dict[str, dict[str, int]] = {p: {} for p in PATHS}

    def step(self, name: str, docs: Iterable) -> None:
        """Record the documents of each path that step `name` removed (`docs`: what it kept)."""
        now = Counter(path_of(d) for d in docs)
        for p in PATHS:
            self.removed[p][name] = self.removed[p].get(name, 0) + self.current[p] - now[p]
        self.current = now

    def summary(self, extraction_paths: Mapping[str, int], removed: Mapping[str, int],
                reasons: Mapping[str, Mapping[str, int]]) -> dict[str, dict]:
        """{path: {in, kept, removed: {step: n}, reasons: {step: {reason: n}}}} for stats.json."""
        out = {}
        for p in PATHS:
            n_in = sum(n for k, n in extraction_paths.items() if (k == "math") == (p == "math"))
            steps = {s: removed[s] for s in PER_PAGE[p] if s in removed}
            out[p] = {"in": n_in, "kept": self.current[p],
                      "removed": steps | self.removed[p],
                      "reasons": {s: dict(reasons.get(s, {})) for s in steps if reasons.get(s)}}
        return out

    @staticmethod
    def metrics(summary: Mapping[str, Mapping]) -> dict[str, float]:
        """Flat MLflow metrics: `path.<path>.in`, `.kept`, `.removed.<step>`."""
        out: dict[str, float] = {}
        for p, s in summary.items():
            out[f"path.{p}.in"] = float(s["in"])
            out[f"path.{p}.kept"] = float(s["kept"])
            out |= {f"path.{p}.removed.{k}": float(v) for k, v in s["removed"].items()}
        return out
