"""Reference-quality text: the positives the quality classifiers learn from.

Two sources, neither tied to a machine path:
- `read_reference_texts(paths)`: files and folders the user names (.txt, .md, .rst, .html, .htm), e.g. the
  HTML manuals Debian packages install under /usr/share/doc, cut into documents of bounded length.
- `stdlib_docstrings()`: the docstrings of the running Python's standard library, parsed with `ast` (no
  module is imported, so nothing runs), glued into documents; always there, so tests and smoke runs use it.
"""

from __future__ import annotations

import ast
import functools
import random
import re
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

import trafilatura

from factory.errors import InputError

TEXT_SUFFIXES = {".txt", ".md", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}


def read_reference_texts(paths: Iterable[str | Path], min_words: int = 50, max_words: int = 400) -> list[str]:
    """Documents of `min_words`..`max_words` words from the text and HTML files under `paths`.

    A file is split at blank lines into paragraphs that are packed into documents up to `max_words`;
    shorter leftovers are dropped. A path that does not exist raises `InputError`; an unreadable file is skipped.
    """
    docs: list[str] = []
    for path in map(Path, paths):
        if not path.exists():
            raise InputError(f"reference text source {path} does not exist")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            suffix = file.suffix.lower()
            if suffix not in TEXT_SUFFIXES | HTML_SUFFIXES:
                continue
            try:
                raw = file.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            text = _html_text(raw) if suffix in HTML_SUFFIXES else raw
            docs.extend(_pack(re.split(r"\n\s*\n", text), min_words, max_words))
    return docs


def _html_text(html: str) -> str:
    return trafilatura.extract(html, include_comments=False, include_tables=False) or ""


def _pack(paragraphs: Iterable[str], min_words: int, max_words: int) -> Iterator[str]:
    """Greedily join paragraphs into documents of at most `max_words` words (at least `min_words`)."""
    current: list[str] = []
    words = 0
    for para in paragraphs:
        para = para.strip()
        n = len(para.split())
        if not n:
            continue
        if current and words + n > max_words:
            if words >= min_words:
                yield "\n\n".join(current)
            current, words = [], 0
        current.append(para)
        words += n
    if words >= min_words:
        yield "\n\n".join(current)


def stdlib_docstrings(
    n_docs: int | None = None, min_words: int = 150, max_words: int = 400, seed: int = 0
) -> list[str]:
    """Documents glued from the standard library's docstrings (modules, classes, functions), deterministic.

    Docstrings come from the top-level `.py` modules of this interpreter's stdlib (private ones left out),
    de-duplicated, shuffled with `seed`, and packed into documents of `min_words`..`max_words` words.
    """
    strings = list(_stdlib_docstrings())
    random.Random(seed).shuffle(strings)
    docs = list(_pack(strings, min_words, max_words))
    return docs[:n_docs] if n_docs is not None else docs


@functools.cache
def _stdlib_docstrings() -> tuple[str, ...]:
    # top-level modules only: about 170 files, ~1 s to parse, ample text; packages would add 900 more files
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    strings: list[str] = []
    for file in sorted(root.glob("*.py")):
        if file.name.startswith("_"):
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                # one-liners ("Return self.") are everywhere and would make near-duplicates by accident
                if doc and len(doc.split()) >= 20 and doc not in seen:
                    seen.add(doc)
                    strings.append(doc)
    return tuple(strings)
