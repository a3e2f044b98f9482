"""The per-page half of the math chain: pages the math path extracted leave the prose filters here.

One datatrove step, right after extraction. Pages whose `metadata["extraction"]` is not "math" pass on
untouched to the prose filters (language id, Gopher repetition and quality, ...), which so never see a math
page. A math page is checked on its prose (`mask.prose_view`: display math and code removed, inline math one
word), not on its raw text, where LaTeX reads as non-words and repeated formulas as repetition:

    language id (py3langid, the stage's languages and min score) -> Gopher quality rules -> Gopher repetition
    rules, each with the math thresholds of `MathChainConfig`

A kept page is written to `<out_folder>/<rank>.jsonl.gz` (the same rows as the prose path's task output) and
joins the corpus-level steps there: dedup and decontamination as for prose, then the math classifier when
quality scoring is on. The step's datatrove stats count math pages only (`total`, `forwarded`,
`dropped_<reason>`), so they are the math path's per-page drops.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import GopherQualityFilter

from factory.curate.language import language_identifier
from factory.curate.math.config import MathChainConfig
from factory.curate.math.mask import prose_view
from factory.curate.math.paths import is_math
from factory.curate.repetition import FastGopherRepetition
from factory.curate.words import word_splitter


class MathChain(PipelineStep):
    """Route math pages out of the prose filters and through the math rules; see the module docstring."""

    name = "∑ Math chain"
    type = "🔻 - FILTER"

    def __init__(self, chain: MathChainConfig, languages: list[str], min_language_score: float,
                 out_folder: Path | None):
        super().__init__()
        self.chain = chain
        self.languages = set(languages)
        self.min_language_score = min_language_score
        self.out_folder = None if out_folder is None else Path(out_folder)
        self._rules: list | None = None
        self._identifier = None

    def _build(self) -> list:
        """datatrove's Gopher filters with the math thresholds (built lazily: the step is pickled into workers), with
        the prose path's faster parts and datatrove's decisions: spaCy words cached per chunk (`CachedSpacyWords`)
        and n-grams counted with numpy (`FastGopherRepetition`)."""
        words = word_splitter("en")  # datatrove's default language for both filters
        rules = []
        if self.chain.quality.enabled:
            rules.append(GopherQualityFilter(**self.chain.quality.thresholds(), language=words))
        if self.chain.repetition.enabled:
            rules.append(FastGopherRepetition(**self.chain.repetition.thresholds(), language=words))
        return rules

    def check(self, doc: Document) -> str | None:
        """Why the math page `doc` is dropped, or None to keep it; sets its language metadata."""
        if self._rules is None:
            self._rules = self._build()
        if self._identifier is None:
            self._identifier = language_identifier()  # the prose path's model, read once per process
        view = prose_view(doc.text)
        language, score = self._identifier.classify(view or doc.text)
        doc.metadata["language"] = language
        doc.metadata["language_score"] = round(float(score), 4)
        if self.languages and language not in self.languages:
            return f"language_{language}"
        if score < self.min_language_score:
            return "low_score"
        masked = Document(text=view, id=doc.id)
        for rule in self._rules:
            verdict = rule.filter(masked)
            if verdict is not True:
                return verdict[1] if isinstance(verdict, tuple) else "dropped"
        return None

    def run(self, data, rank: int = 0, world_size: int = 1):
        out = None
        try:
            for doc in data:
                if not is_math(doc):
                    yield doc  # prose: on to the prose filters
                    continue
                self.stat_update("total")
                with self.track_time():
                    try:
                        reason = self.check(doc)
                    except Exception as error:  # noqa: BLE001 (one page that breaks a rule is dropped and counted)
                        reason = f"error_{type(error).__name__}"
                if reason is not None:
                    self.stat_update("dropped", f"dropped_{reason}")
                    continue
                self.stat_update("forwarded")
                if self.out_folder is not None:
                    if out is None:
                        self.out_folder.mkdir(parents=True, exist_ok=True)
                        out = gzip.open(self.out_folder / f"{rank:05d}.jsonl.gz", "wt", encoding="utf-8")
                    out.write(json.dumps({"id": doc.id, "text": doc.text, "metadata": doc.metadata}) + "\n")
        finally:
            if out is not None:
                out.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_identifier"] = None
        state["_rules"] = None
        return state
