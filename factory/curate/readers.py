"""Read raw web pages into datatrove `Document`s, in a stable order.

Formats, by file name:
- `.html` / `.htm`: one page per file.
- `.warc` / `.warc.gz`: one page per HTML `response` record; `conversion` records (WET text) become text.
- `.wet` / `.wet.gz` / `.warc.wet.gz`: Common Crawl's extracted text, one text document per record.
- `.jsonl` / `.jsonl.gz`: one object per line with `"html"` (a page) or `"text"` (already plain text), and
  optionally `"id"` and `"url"`.

Every input unit (a file, a record, a line) either becomes one document or is skipped and counted under a
reason (`skipped_<reason>` in the reader's datatrove stats): a malformed input never stops the run. A unit
larger than `max_page_bytes` is skipped as `too_large` without being held in memory. Documents carry
`metadata["order"] = [file_index, record_index]`, so outputs from parallel tasks can be put back in input
order, and `metadata["format"]` ("html" or "text"), which tells the extraction step what to do.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseReader

from factory.errors import InputError
from factory.logs import progress

HTML_SUFFIXES = (".html", ".htm")
WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
SUFFIXES = HTML_SUFFIXES + WARC_SUFFIXES + JSONL_SUFFIXES
SKIP_REASONS = ("empty", "binary", "undecodable", "truncated", "not_html", "http_status", "unreadable",
                "too_large", "invalid_json")
DEFAULT_MAX_PAGE_BYTES = 5_000_000

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_CANONICAL = re.compile(
    r"""<link[^>]*rel\s*=\s*["']?canonical["']?[^>]*href\s*=\s*["']([^"']+)["']"""
    r"""|<link[^>]*href\s*=\s*["']([^"']+)["'][^>]*rel\s*=\s*["']?canonical""",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SourceFile:
    """One input file: `name` is its stable, machine-independent name (source folder name + relative path)."""

    name: str
    path: Path

    @property
    def is_warc(self) -> bool:
        return self.name.lower().endswith(WARC_SUFFIXES)

    @property
    def is_jsonl(self) -> bool:
        return self.name.lower().endswith(JSONL_SUFFIXES)


def _wanted(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def list_sources(sources: list[str]) -> list[SourceFile]:
    """All HTML/WARC/WET/JSONL files under `sources` (files or folders), sorted; raises InputError for a bad entry."""
    found: list[SourceFile] = []
    for entry in sources:
        root = Path(entry).expanduser()
        if not root.exists():
            raise InputError(f"curate source {entry!r} does not exist (config field `sources`)")
        if root.is_file():
            if not _wanted(root):
                raise InputError(f"curate source {entry!r} is not a {'/'.join(SUFFIXES)} file")
            files = [SourceFile(root.name, root)]
        else:
            paths = sorted((p for p in root.rglob("*") if p.is_file() and _wanted(p)),
                           key=lambda p: p.relative_to(root).as_posix())
            files = [SourceFile(f"{root.resolve().name}/{p.relative_to(root).as_posix()}", p) for p in paths]
        if not files:
            raise InputError(f"curate source {entry!r} holds no {'/'.join(SUFFIXES)} files")
        found += files
    names = [f.name for f in found]
    if len(set(names)) != len(names):  # two sources with the same folder name: keep names unique, still stable
        found = [SourceFile(f"{i}/{f.name}", f.path) for i, f in enumerate(found)]
    return found


def decode_html(raw: bytes, declared_charset: str | None = None) -> tuple[str | None, str | None]:
    """Bytes of a page -> (text, None), or (None, skip reason) for empty, binary or undecodable bytes."""
    if not raw.strip():
        return None, "empty"
    head = raw[:4096]
    # NUL bytes or many control characters: an image, archive or other binary file with an .html name
    controls = sum(b < 9 or 13 < b < 32 for b in head)
    if b"\x00" in head or controls > len(head) // 20:
        return None, "binary"
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    match = _META_CHARSET.search(head)
    charset = declared_charset or (match.group(1).decode("ascii") if match else None)
    if charset and charset.lower().replace("-", "") != "utf8":
        try:
            return raw.decode(charset), None
        except (LookupError, UnicodeDecodeError):
            pass
    return None, "undecodable"


def canonical_url(html: str) -> str | None:
    """The page's `<link rel="canonical">` address, if it declares one."""
    match = _CANONICAL.search(html[:20000])
    return (match.group(1) or match.group(2)) if match else None


def _http_charset(content_type: str) -> str | None:
    match = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


class WebSourceReader(BaseReader):
    """datatrove reader for HTML, WARC, WET and JSONL files (gzipped or not).

    File `i` of the sorted list goes to task `i % world_size` (input sharding), so the set of documents does
    not depend on the number of tasks. HTML documents get the file's name as id; WARC/WET records
    `<file name>#<record number>`; JSONL lines their `"id"` or `<file name>#<line number>`.
    """

    name = "🌐 Web pages (HTML, WARC, WET, JSONL)"

    def __init__(self, files: list[SourceFile], max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES):
        super().__init__()
        self.files = list(files)
        self.max_page_bytes = max_page_bytes

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        mine = [(index, source) for index, source in enumerate(self.files) if index % world_size == rank]
        for index, source in progress(mine, desc=f"curate: read files (task {rank})"):
            try:
                if source.path.stat().st_size == 0:
                    self._skip("empty")  # an empty WARC or JSONL file would otherwise pass unnoticed
                    continue
            except OSError:
                self._skip("unreadable")
                continue
            reader = self._read_warc if source.is_warc else self._read_jsonl if source.is_jsonl else self._read_html
            docs = reader(index, source)
            while True:
                # time spent reading and decoding only (not in the steps downstream, which run between yields)
                start = time.perf_counter()
                doc = next(docs, None)
                self.stats.time_stats.update(time.perf_counter() - start)
                if doc is None:
                    break
                self.stat_update("documents")
                self.update_doc_stats(doc)
                yield doc

    def _skip(self, reason: str) -> None:
        self.stat_update(f"skipped_{reason}")

    def _document(self, text: str, doc_id: str, source: SourceFile, order: list[int], url: str | None,
                  fmt: str = "html") -> Document:
        return Document(text=text, id=doc_id, metadata={"source": source.name, "url": url, "order": order, "format": fmt})

    def _read_html(self, index: int, source: SourceFile) -> Iterator[Document]:
        try:
            if source.path.stat().st_size > self.max_page_bytes:
                self._skip("too_large")  # never read into memory
                return
            raw = source.path.read_bytes()
        except OSError:
            self._skip("unreadable")
            return
        text, reason = decode_html(raw)
        if text is None:
            self._skip(reason)
            return
        yield self._document(text, source.name, source, [index, 0], canonical_url(text))

    def _read_warc(self, index: int, source: SourceFile) -> Iterator[Document]:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        try:
            with source.path.open("rb") as f:
                for number, record in enumerate(ArchiveIterator(f)):
                    if record.rec_type not in ("response", "conversion"):
                        continue  # warcinfo, request, metadata records carry no page
                    doc = self._warc_document(record, index, number, source)
                    if doc is not None:
                        yield doc
        except (ArchiveLoadFailed, EOFError, zlib.error, OSError, ValueError):
            # a cut-off or corrupt WARC: the records read so far stay, the rest of the file counts as one skip
            self._skip("truncated")

    def _warc_document(self, record, index: int, number: int, source: SourceFile) -> Document | None:
        raw = record.content_stream().read(self.max_page_bytes + 1)
        if len(raw) > self.max_page_bytes:
            self._skip("too_large")  # warcio skips the rest of the record without keeping it
            return None
        if getattr(record.raw_stream, "limit", 0) > 0:
            # warcio ends a cut-off gzip stream quietly; a record shorter than its Content-Length gives it away
            raise EOFError(f"record {number} of {source.name} is cut off")
        url = record.rec_headers.get_header("WARC-Target-URI")
        if record.rec_type == "conversion":  # WET: text already extracted by the crawler
            text, reason = decode_html(raw, "utf-8")
            if text is None:
                self._skip(reason)
                return None
            return self._document(text, f"{source.name}#{number}", source, [index, number], url, fmt="text")
        content_type, status = "", None
        if record.http_headers is not None:
            content_type = record.http_headers.get_header("Content-Type") or ""
            status = record.http_headers.get_statuscode()
        content_type = content_type or record.rec_headers.get_header("WARC-Identified-Payload-Type") or ""
        if status and not str(status).startswith("2"):
            self._skip("http_status")  # redirects and error pages carry no article
            return None
        mime = content_type.split(";")[0].strip().lower()
        looks_html = b"<html" in raw[:2048].lower() or b"<!doctype html" in raw[:2048].lower()
        if mime not in ("text/html", "application/xhtml+xml") and not (not mime and looks_html):
            self._skip("not_html")
            return None
        text, reason = decode_html(raw, _http_charset(content_type))
        if text is None:
            self._skip(reason)
            return None
        url = url or canonical_url(text)
        return self._document(text, f"{source.name}#{number}", source, [index, number], url)

    def _read_jsonl(self, index: int, source: SourceFile) -> Iterator[Document]:
        opener = gzip.open if source.name.lower().endswith(".gz") else open
        try:
            with opener(source.path, "rb") as f:
                number = -1
                while True:
                    # readline with a cap: a 50 MB line is never held whole, only skipped
                    line = f.readline(self.max_page_bytes + 1)
                    if not line:
                        break
                    number += 1
                    if len(line) > self.max_page_bytes and not line.endswith(b"\n"):
                        while line and not line.endswith(b"\n"):
                            line = f.readline(1 << 20)
                        self._skip("too_large")
                        continue
                    if not line.strip():
                        continue
                    doc = self._jsonl_document(line, index, number, source)
                    if doc is not None:
                        yield doc
        except (EOFError, zlib.error, OSError):
            self._skip("truncated")

    def _jsonl_document(self, line: bytes, index: int, number: int, source: SourceFile) -> Document | None:
        try:
            row = json.loads(line)
        except (UnicodeDecodeError, ValueError):
            self._skip("invalid_json")
            return None
        if not isinstance(row, dict) or not isinstance(row.get("html", row.get("text")), str):
            self._skip("invalid_json")  # a line without a "html" or "text" string
            return None
        fmt = "html" if isinstance(row.get("html"), str) else "text"
        text = row[fmt]
        if not text.strip():
            self._skip("empty")
            return None
        doc_id = str(row["id"]) if row.get("id") is not None else f"{source.name}#{number}"
        meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        url = row.get("url") or meta.get("url")
        return self._document(text, doc_id, source, [index, number], url, fmt=fmt)
