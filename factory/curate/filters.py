"""datatrove steps the curate stage adds to the library's own: extraction, language id, exact dedup.

Each is a datatrove `BaseFilter` / `BaseExtractor`, so drops are counted in the step's stats the same way
as for datatrove's Gopher filters (`dropped`, `dropped_<reason>`). Every filter here, and datatrove's own
as the stage uses them (`GopherRepetitionFilter`, ... below), turns an exception on one document into a
drop of that document under `error_<ExceptionType>` (`Isolated`), so one bad page never stops the run.

Where the time went (bench/curate.py): trafilatura, spaCy building a `Doc` per page for the Gopher filters'
words, a Python string per Gopher n-gram, and py3langid's Python loop over every byte. The default extractor is
`resiliparse_rules`; the Gopher filters split words with `factory.curate.words.CachedSpacyWords` and count n-grams
with `factory.curate.repetition`, language id walks the bytes with numpy (`factory.curate.language`), all with the
libraries' own results (tests/curate/test_words.py, test_repetition.py, test_language.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import unicodedata
from functools import partial

import justext
from datatrove.data import Document
from datatrove.pipeline.extractors.base import BaseExtractor, ExtractorSandbox
from datatrove.pipeline.filters import C4QualityFilter as _C4QualityFilter
from datatrove.pipeline.filters import FineWebQualityFilter as _FineWebQualityFilter
from datatrove.pipeline.filters import GopherQualityFilter as _GopherQualityFilter
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.word_tokenizers import load_word_tokenizer
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree

from factory.curate.language import language_identifier
from factory.curate.limits import DEFAULT_EXTRACT_MEMORY_MB
from factory.curate.math import extract_math_page, has_math
from factory.curate.repetition import FastGopherRepetition
from factory.curate.words import CachedSpacyWords
from factory.logs import get_logger

log = get_logger("factory.curate.filters")


class Isolated:
    """Mixin for a datatrove filter: an exception while filtering one document drops it as `error_<Type>`.

    The first document dropped for each exception type is logged (`curate_step_error`) with its id, which
    names its file and record.
    """

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        try:
            return super().filter(doc)
        except Exception as error:  # noqa: BLE001 (any library's exception on one document is that document's)
            reason = f"error_{type(error).__name__}"
            logged = self.__dict__.setdefault("_logged", set())
            if reason not in logged:
                logged.add(reason)
                log.warning("curate_step_error", step=type(self).__name__, reason=reason, document=doc.id,
                            source=doc.metadata.get("source"), detail=str(error)[:200])
            return False, reason


class ClearsWords:
    """Mixin for a filter that splits words with `CachedSpacyWords`: the cache is emptied when the filter's run
    ends, so a long-lived process holds no cache between stage runs and every run starts from the same state."""

    def run(self, data, rank: int = 0, world_size: int = 1):
        try:
            yield from super().run(data, rank, world_size)
        finally:
            words = load_word_tokenizer(self.language)  # the instance datatrove's split_into_words uses
            if isinstance(words, CachedSpacyWords):
                words.clear()


class GopherRepetitionFilter(ClearsWords, Isolated, FastGopherRepetition):
    """datatrove's Gopher repetition filter, one bad document dropped and counted, not raised.

    Its n-gram rules are counted by `factory.curate.repetition` (same decisions, numpy instead of a Python string
    per n-gram), and words come from `CachedSpacyWords` (datatrove's spaCy words, cached per chunk) unless
    `language` is given.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("language", CachedSpacyWords("en"))
        super().__init__(**kwargs)


class GopherQualityFilter(ClearsWords, Isolated, _GopherQualityFilter):
    """datatrove's Gopher quality filter, one bad document dropped and counted, not raised.

    Words come from `CachedSpacyWords` unless `language` is given; after the repetition filter, datatrove's
    per-text word cache hands over the words that filter computed.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("language", CachedSpacyWords("en"))
        super().__init__(**kwargs)


class C4QualityFilter(Isolated, _C4QualityFilter):
    """datatrove's C4 quality filter, one bad document dropped and counted, not raised."""


class FineWebQualityFilter(Isolated, _FineWebQualityFilter):
    """datatrove's FineWeb quality filter, one bad document dropped and counted, not raised."""


class LanguageIdFilter(Isolated, BaseFilter):
    """Keep documents whose py3langid language is in `languages` with probability >= `min_score`.

    py3langid ships its model inside the package, so nothing is downloaded (datatrove's own LanguageFilter
    fetches a fastText model); `factory.curate.language` runs it with py3langid's results, its byte walk in
    numpy. Every document gets `metadata["language"]` and `["language_score"]`.
    """

    name = "🌍 Language id (py3langid)"

    def __init__(self, languages: list[str], min_score: float):
        super().__init__()
        self.languages = set(languages)
        self.min_score = min_score
        self._identifier = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._identifier is None:  # loaded lazily: the step is pickled into worker processes
            self._identifier = language_identifier()
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


class ExactDedupFilter(Isolated, BaseFilter):
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


EXTRACTORS = ("resiliparse_rules", "trafilatura", "resiliparse", "justext")

# Boilerplate for the `resiliparse_rules` extractor, as CSS selectors that resiliparse (Lexbor) skips while it
# renders the page: HTML5 sectioning tags and ARIA landmark roles that mark page chrome, and the class / id
# names sites use for it (the conventions trafilatura's and readability's discard lists also key on). A name
# matches a whole class token or id, or a dash-separated part of one (`site-footer`, `section-toc`), never a
# substring of another word (`canvas` is not `nav`).
BOILERPLATE_TAGS = ("nav", "header", "footer", "aside")
BOILERPLATE_ROLES = ("navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar")
BOILERPLATE_NAMES = ("nav", "navpath", "menu", "toc", "banner", "cookie", "cookies", "consent", "subscribe", "share",
                     "social", "ads", "promo", "sponsored", "related", "trending", "popular", "widget", "pagination",
                     "skip")
# names long and distinctive enough to match anywhere in a class or id (`groupheader`, `navbarTop`)
BOILERPLATE_STEMS = ("header", "footer", "sidebar", "navbar", "navigation", "breadcrumb", "masthead", "newsletter",
                     "advert")
# class / id rules skip block elements only: an inline element (a `<b class="header">` run-in heading, an
# `<a id="toc-...">` anchor the HTML5 parser may have wrapped around the content after it) is never chrome alone
_INLINE = ":not(a, b, span)"


def _name_selectors(name: str) -> list[str]:
    out = []
    for attr in ("class", "id"):
        out += [f"[{attr}~={name} i]{_INLINE}", f"[{attr}^={name}- i]{_INLINE}", f"[{attr}$=-{name} i]{_INLINE}"]
    return out


BOILERPLATE_SELECTORS = (list(BOILERPLATE_TAGS) + [f"[role={r} i]" for r in BOILERPLATE_ROLES]
                         + [s for name in BOILERPLATE_NAMES for s in _name_selectors(name)]
                         + [f"[{attr}*={stem} i]{_INLINE}" for stem in BOILERPLATE_STEMS for attr in ("class", "id")]
                         + ["a[class~=skip-link i]", "a[class~=skiplink i]"])  # "skip to content" links


def extract_main_text(html: str, extractor: str) -> str:
    """Main text of one HTML page with the named extractor (navigation, banners and footers stripped).

    `resiliparse_rules` (the stage's default): resiliparse's C renderer with the `BOILERPLATE_SELECTORS` skipped
    and no main-content guessing, 10-20x faster than trafilatura (bench/curate.py measures both).
    """
    if extractor == "resiliparse_rules":
        return extract_plain_text(HTMLTree.parse(html), main_content=False, alt_texts=False, links=False,
                                  skip_elements=BOILERPLATE_SELECTORS)
    if extractor == "trafilatura":
        import trafilatura  # about 1 s in every worker process, and only this alternative extractor needs it

        # datatrove's Trafilatura step settings, with favour_precision as Nemotron-CC-style pipelines use
        return trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=True) or ""
    if extractor == "resiliparse":
        return extract_plain_text(HTMLTree.parse(html), main_content=True, alt_texts=False, links=False)
    if extractor == "justext":
        if not html.strip():
            return ""
        paragraphs = justext.justext(html, justext.get_stoplist("English"))
        return "\n".join(p.text for p in paragraphs if not p.is_boilerplate)
    raise ValueError(f"unknown extractor {extractor!r}; known: {list(EXTRACTORS)}")


_OUT_OF_MEMORY = "out_of_memory"  # what the sandbox's worker answers for a page that passed its memory limit


def _address_space() -> int | None:
    """This process's virtual memory in bytes (Linux's /proc), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _peak_address_space() -> int:
    """The most virtual memory this process has held, in bytes (Linux's /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class BoundedSandbox(ExtractorSandbox):
    """datatrove's extraction sandbox (a worker process per task, a time limit per page), with a memory limit per
    page as well: the worker may grow its address space by `memory_bytes` past what it inherited (RLIMIT_AS, where
    the OS has /proc and enforces it: Linux). A page that passes it (misnested tags whose reconstruction grows the
    tree quadratically: 58 KB took 3.4 GB) fails its allocation and is answered `out_of_memory`, and the worker is
    replaced; any other exception is answered as itself (datatrove's worker would die on it and be restarted)."""

    def __init__(self, timeout: float, memory_bytes: int | None):
        super().__init__(timeout=timeout, warmup_text="")
        self.memory_bytes = memory_bytes
        self._limit: int | None = None

    def _worker(self, conn, extract_fn):
        start = _address_space()
        if self.memory_bytes is not None and start is not None:
            self._limit = start + self.memory_bytes
            resource.setrlimit(resource.RLIMIT_AS, (self._limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        super()._worker(conn, partial(self._guarded, extract_fn))

    def _guarded(self, extract_fn, *args):
        try:
            return extract_fn(*args)
        except MemoryError:
            return _OUT_OF_MEMORY
        except Exception as error:  # noqa: BLE001 (sent back: the parent counts it, the worker lives on)
            # a parser that fails an allocation raises its own error (resiliparse: HTMLParserException); the
            # worker's peak tells (it is replaced after each page that reached its limit)
            if self._limit is not None and _peak_address_space() > self._limit - (64 << 20):
                return _OUT_OF_MEMORY
            return error


class Extract(BaseExtractor):
    """Main-text extraction, one page at a time in a sandboxed subprocess (per-page time and memory limits).

    Text documents (WET records, JSONL `"text"`) pass through untouched. HTML pages with equations go to
    the math-aware path (`factory.curate.math`) when `math` is a config with `enabled`; the others to
    `extractor`. Each document records which path it took in `metadata["extraction"]`; a page that
    extracts to nothing is dropped and counted (`empty`, `timeout`, `out_of_memory`, `clean_error`,
    `broken_process`): a page past `timeout` seconds or `memory_mb` MiB is counted, not waited for.
    """

    name = "⛏ Extract main text"

    def __init__(self, extractor: str = "resiliparse_rules", timeout: float = 30, math=None,
                 memory_mb: int | None = DEFAULT_EXTRACT_MEMORY_MB):
        super().__init__(timeout)
        if extractor not in EXTRACTORS:
            raise ValueError(f"unknown extractor {extractor!r}; known: {list(EXTRACTORS)}")
        self.extractor = extractor
        self.math = math if math is not None and getattr(math, "enabled", False) else None
        self.memory_mb = memory_mb

    def extract(self, html: str) -> tuple[str, str]:
        if self.math is not None:
            if has_math(html):
                return extract_math_page(html, self.math) or "", "math"
        return extract_main_text(html, self.extractor), self.extractor

    def run(self, data, rank: int = 0, world_size: int = 1):
        memory = None if self.memory_mb is None else self.memory_mb << 20
        with BoundedSandbox(self.timeout, memory) as sandbox:
            for doc in data:
                self.stat_update("total")
                if doc.metadata.get("format") == "text":
                    doc.metadata["extraction"] = "none"
                    self.stat_update("forwarded", "passthrough")
                    yield doc
                    continue
                with self.track_time():
                    try:
                        result = sandbox.process_document(doc.text, self.extract)
                    except TimeoutError:
                        self.stat_update("timeout")
                        continue
                    except EOFError:  # the sandbox process died (a crash or out of memory); a new one starts
                        self.stat_update("broken_process")
                        continue
                    except Exception:  # noqa: BLE001 (a page that breaks the parser is data, not a bug)
                        self.stat_update("clean_error")
                        continue
                    if result == _OUT_OF_MEMORY:
                        self.stat_update(_OUT_OF_MEMORY)
                        sandbox._cleanup_process()  # a fresh worker for the next page, not one with a grown heap
                        continue
                text, path = result
                if text.strip():
                    doc.text = text
                    doc.metadata["extraction"] = path
                    self.stat_update("forwarded", f"path_{path}")
                    self.update_doc_stats(doc)
                    yield doc
                else:
                    self.stat_update("dropped")
