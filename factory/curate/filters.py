"""datatrove steps the curate stage adds to the library's own: language id, exact dedup, a jusText extractor.

Each is a datatrove `BaseFilter` / `BaseExtractor`, so drops are counted in the step's stats the same way
as for datatrove's Gopher filters (`dropped`, `dropped_<reason>`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from datatrove.data import Document
from datatrove.pipeline.extractors.base import BaseExtractor
from datatrove.pipeline.filters.base_filter import BaseFilter


class LanguageIdFilter(BaseFilter):
    """Keep documents whose py3langid language is in `languages` with probability >= `min_score`.

    py3langid ships its model inside the package, so nothing is downloaded (datatrove's own LanguageFilter
    fetches a fastText model). Every document gets `metadata["language"]` and `["language_score"]`.
    """

    name = "🌍 Language id (py3langid)"

    def __init__(self, languages: list[str], min_score: float):
        super().__init__()
        self.languages = set(languages)
        self.min_score = min_score
        self._identifier = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._identifier is None:  # loaded lazily: the step is pickled into worker processes
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        language, score = self._identifier.classify(doc.text)
        doc.metadata["language"] = language
        doc.metadata["language_score"] = round(float(score), 4)
        if self.languages and language not in self.languages:
            return False, f"language_{language}"
        if score < self.min_score:
            return False, "low_score"
        return True

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_identifier"] = None
        return state


def normalised_text_hash(text: str) -> str:
    """sha256 of the text after NFKC, case folding and whitespace collapsing: equal for trivially equal pages."""
    norm = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


class ExactDedupFilter(BaseFilter):
    """Drop a document whose normalised text was seen before in this run; the first one in input order stays.

    Run it on documents in a stable order (the stage sorts by input position) so the same copy is kept
    every time.
    """

    name = "🫂 Exact dedup"

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        digest = normalised_text_hash(doc.text)
        if digest in self.seen:
            return False, "duplicate"
        self.seen.add(digest)
        return True


class Justext(BaseExtractor):
    """jusText extractor: keeps the paragraphs jusText does not classify as boilerplate (English stoplist)."""

    name = "⛏ jusText"
    _requires_dependencies = ["justext"]

    def __init__(self, timeout: float = 10):
        super().__init__(timeout)

    def extract(self, text: str) -> str:
        import justext

        if not text.strip():
            return ""
        paragraphs = justext.justext(text, justext.get_stoplist("English"))
        return "\n".join(p.text for p in paragraphs if not p.is_boilerplate)
