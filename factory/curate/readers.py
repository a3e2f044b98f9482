"""Read raw web pages into datatrove `Document`s, in a stable order.

Formats, by file name:
- `.html` / `.htm`: one page per file.
- `.warc` / `.warc.gz`: one page per HTML `response` record; `conversion` records (WET text) become text.
- `.wet` / `.wet.gz` / `.warc.wet.gz`: Common Crawl's extracted text, one text document per record.
- `.jsonl` / `.jsonl.gz`: one object per line with `"html"` (a page) or `"text"` (already plain text), and
  optionally `"id"` and `"url"`.

Every input unit (a file, a record, a line) either becomes one document or is skipped and counted under a
reason (`skipped_<reason>` in the reader's datatrove stats): a malformed input never stops the run. An
exception from a parser (warcio, the JSON decoder, a codec) on one unit skips that unit under
`error_<ExceptionType>`. The file and byte offset of the first unit skipped for each reason are logged once
(`curate_skip`) and kept as that reason's sample (`WebSourceReader.samples`).

The reader keeps its own framing, so one broken record loses only itself:
- A `.gz` WARC/WET is read one gzip member at a time (the WARC standard puts each record in its own member).
  A corrupt member (`corrupt_gzip`), one that runs to the end of the file (`truncated`) and one that expands
  past `max_member_bytes` (a gzip bomb: `too_large`, the rest never expanded) are skipped, and reading
  resumes at the next gzip header.
- WARC record framing (the `WARC/1.x` line, header block, `Content-Length`, the blank lines after the
  block) is checked before warcio parses the record. A broken header block (`bad_warc_header`, or
  `header_too_large` past `max_header_bytes`) or a `Content-Length` that does not end at the next record
  (`bad_length`) skips that record and resumes at the next `WARC/1.` line. Bytes passed over while looking
  for the next record count under `skipped_lost_bytes` (a byte count, not a reason).
- A unit larger than `max_page_bytes` is skipped as `too_large` without being held in memory; a JSONL line
  longer than that is passed over up to `max_member_bytes`, past which the rest of the file is lost (`too_large`).

File names may be any bytes: `SourceFile.name` is the escaped form (`os.fsencode`, then backslash-replace),
so ids, logs and stats stay valid UTF-8. Documents carry `metadata["order"] = [file_index, record_index]`,
so outputs from parallel tasks can be put back in input order, and `metadata["format"]` ("html" or
"text"), which tells the extraction step what to do.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseReader
from warcio.archiveiterator import ArchiveIterator

from factory.curate.limits import DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_MEMBER_BYTES, DEFAULT_MAX_PAGE_BYTES
from factory.errors import InputError
from factory.logs import get_logger, progress

HTML_SUFFIXES = (".html", ".htm")
WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
SUFFIXES = HTML_SUFFIXES + WARC_SUFFIXES + JSONL_SUFFIXES
# reasons always reported (0 when absent); parsers' exceptions add `error_<ExceptionType>` reasons
SKIP_REASONS = ("empty", "binary", "undecodable", "truncated", "not_html", "http_status", "unreadable",
                "too_large", "invalid_json", "corrupt_gzip", "bad_warc_header", "header_too_large", "bad_length")
# reasons that mean an input unit was damaged or could not be parsed (what the error budget counts), as opposed
# to a page the reader declines by policy (empty, binary, not HTML, an error status, over a size cap)
DAMAGE_REASONS = ("undecodable", "truncated", "unreadable", "invalid_json", "corrupt_gzip", "bad_warc_header",
                  "header_too_large", "bad_length")
ERROR_PREFIX = "error_"
LOST_BYTES = "lost_bytes"  # reader stat `skipped_lost_bytes`: bytes passed over while resynchronising

_GZIP_MAGIC = b"\x1f\x8b\x08"
_CONTROL_BYTES = bytes([*range(9), *range(14, 32)])  # control characters other than tab, newlines, form feed
_CHUNK = 1 << 16
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_CANONICAL = re.compile(
    r"""<link[^>]*rel\s*=\s*["']?canonical["']?[^>]*href\s*=\s*["']([^"']+)["']"""
    r"""|<link[^>]*href\s*=\s*["']([^"']+)["'][^>]*rel\s*=\s*["']?canonical""",
    re.IGNORECASE,
)

log = get_logger("factory.curate.readers")


def is_damage(reason: str) -> bool:
    """Whether a skip reason means the unit was damaged or broke a parser (counted by the error budget)."""
    return reason in DAMAGE_REASONS or reason.startswith(ERROR_PREFIX)


def escaped_name(path: str | Path) -> str:
    """A path as valid UTF-8 text: bytes that are not UTF-8 become `\\xNN` (os.fsencode, then backslash-replace)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class SourceFile:
    """One input file: `name` is its stable, machine-independent name (source folder name + relative path),
    escaped to valid UTF-8; `path` is the file itself, whatever bytes its name holds."""

    name: str
    path: Path

    @property
    def is_warc(self) -> bool:
        return self.name.lower().endswith(WARC_SUFFIXES)

    @property
    def is_jsonl(self) -> bool:
        return self.name.lower().endswith(JSONL_SUFFIXES)

    @property
    def is_gzip(self) -> bool:
        return self.name.lower().endswith(".gz")


def _wanted(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def list_sources(sources: list[str]) -> list[SourceFile]:
    """All HTML/WARC/WET/JSONL files under `sources` (files or folders), sorted; raises InputError for a bad entry."""
    found: list[SourceFile] = []
    for entry in sources:
        root = Path(entry).expanduser()
        if not root.exists():
            raise InputError(f"curate source {escaped_name(entry)!r} does not exist (config field `sources`)")
        if root.is_file():
            if not _wanted(root):
                raise InputError(f"curate source {escaped_name(entry)!r} is not a {'/'.join(SUFFIXES)} file")
            files = [SourceFile(escaped_name(root.name), root)]
        else:
            # sorted by the name's bytes: the same order whatever the file system's encoding
            paths = sorted((p for p in root.rglob("*") if p.is_file() and _wanted(p)),
                           key=lambda p: os.fsencode(p.relative_to(root).as_posix()))
            files = [SourceFile(escaped_name(f"{root.resolve().name}/{p.relative_to(root).as_posix()}"), p)
                     for p in paths]
        if not files:
            raise InputError(f"curate source {escaped_name(entry)!r} holds no {'/'.join(SUFFIXES)} files")
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
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))  # counted in C, not per byte in Python
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
        except (LookupError, UnicodeDecodeError, ValueError):  # ValueError: a codec that takes no bytes
            pass
    return None, "undecodable"


def canonical_url(html: str) -> str | None:
    """The page's `<link rel="canonical">` address, if it declares one."""
    match = _CANONICAL.search(html[:20000])
    return (match.group(1) or match.group(2)) if match else None


def _http_charset(content_type: str) -> str | None:
    match = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


@dataclass
class _Unit:
    """One WARC record cut out of its file: where it starts, and its bytes (header block, content, blank lines)."""

    offset: int
    data: bytes


class WebSourceReader(BaseReader):
    """datatrove reader for HTML, WARC, WET and JSONL files (gzipped or not).

    File `i` of the sorted list goes to task `i % world_size` (input sharding), so the set of documents does
    not depend on the number of tasks. HTML documents get the file's name as id; WARC/WET records
    `<file name>#<record number>`; JSONL lines their `"id"` or `<file name>#<line number>`. Records that
    carry no page (warcinfo, request, metadata) count under the stat `other_records`. When `samples_dir`
    is given, each task writes its per-reason samples there as `<rank>.json` at the end.
    """

    name = "🌐 Web pages (HTML, WARC, WET, JSONL)"

    def __init__(self, files: list[SourceFile], max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
                 max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
                 samples_dir: str | Path | None = None):
        super().__init__()
        self.files = list(files)
        self.max_page_bytes = max_page_bytes
        self.max_header_bytes = max_header_bytes
        self.max_member_bytes = max(max_member_bytes, max_page_bytes + 2 * max_header_bytes)
        self.samples_dir = None if samples_dir is None else str(samples_dir)
        self.samples: dict[str, dict] = {}  # reason -> {"file", "offset", "detail"} of its first skip

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        mine = [(index, source) for index, source in enumerate(self.files) if index % world_size == rank]
        for index, source in progress(mine, desc=f"curate: read files (task {rank})"):
            try:
                if source.path.stat().st_size == 0:
                    self._skip("empty", source, 0)  # an empty WARC or JSONL file would otherwise pass unnoticed
                    continue
            except OSError as error:
                self._skip("unreadable", source, 0, str(error))
                continue
            reader = self._read_warc if source.is_warc else self._read_jsonl if source.is_jsonl else self._read_html
            docs = reader(index, source)
            while True:
                # time spent reading and decoding only (not in the steps downstream, which run between yields)
                start = time.perf_counter()
                try:
                    doc = next(docs, None)
                except Exception as error:  # noqa: BLE001 (a last resort: the per-unit guards missed it)
                    # the reader lost its place in this file: the rest of it is one skip, the next file goes on
                    self._skip(ERROR_PREFIX + type(error).__name__, source, -1, str(error))
                    doc = None
                self.stats.time_stats.update(time.perf_counter() - start)
                if doc is None:
                    break
                self.stat_update("documents")
                self.update_doc_stats(doc)
                yield doc
        if self.samples_dir is not None:
            Path(self.samples_dir).mkdir(parents=True, exist_ok=True)
            (Path(self.samples_dir) / f"{rank:05d}.json").write_text(json.dumps(self.samples, sort_keys=True))

    def _skip(self, reason: str, source: SourceFile, offset: int, detail: str = "") -> None:
        self.stat_update(f"skipped_{reason}")
        if reason not in self.samples:  # logged once per reason, with the first file and offset as a sample
            self.samples[reason] = {"file": source.name, "offset": offset, "detail": detail[:200]}
            log.warning("curate_skip", reason=reason, file=source.name, offset=offset, detail=detail[:200])

    def _lost(self, n_bytes: int) -> None:
        if n_bytes > 0:
            self.stat_update(f"skipped_{LOST_BYTES}", value=n_bytes)

    def _document(self, text: str, doc_id: str, source: SourceFile, order: list[int], url: str | None,
                  fmt: str = "html") -> Document:
        return Document(text=text, id=doc_id, metadata={"source": source.name, "url": url, "order": order, "format": fmt})

    # HTML -------------------------------------------------------------------------------------------------

    def _read_html(self, index: int, source: SourceFile) -> Iterator[Document]:
        try:
            if source.path.stat().st_size > self.max_page_bytes:
                self._skip("too_large", source, 0)  # never read into memory
                return
            raw = source.path.read_bytes()
        except OSError as error:
            self._skip("unreadable", source, 0, str(error))
            return
        try:
            text, reason = decode_html(raw)
            doc = None if text is None else self._document(text, source.name, source, [index, 0], canonical_url(text))
        except Exception as error:  # noqa: BLE001 (a page that breaks a decoder is data, not a bug)
            self._skip(ERROR_PREFIX + type(error).__name__, source, 0, str(error))
            return
        if doc is None:
            self._skip(reason, source, 0)
            return
        yield doc

    # WARC / WET ---------------------------------------------------------------------------------------------

    def _read_warc(self, index: int, source: SourceFile) -> Iterator[Document]:
        try:
            with source.path.open("rb") as f:
                units = self._gzip_warc_units(f, source) if source.is_gzip else self._warc_units(f, source, 0)
                for number, unit in enumerate(units):
                    try:
                        doc = self._warc_document(unit, index, number, source)
                    except Exception as error:  # noqa: BLE001 (any parser's exception on one record skips it)
                        self._skip(ERROR_PREFIX + type(error).__name__, source, unit.offset, str(error))
                        continue
                    if doc is not None:
                        yield doc
        except OSError as error:
            self._skip("unreadable", source, 0, str(error))

    def _gzip_warc_units(self, f: BinaryIO, source: SourceFile) -> Iterator[_Unit]:
        """The records of a gzipped WARC, one gzip member at a time, each member expanded to at most
        `max_member_bytes`; offsets are those of the members in the compressed file."""
        pos, resyncing = 0, False
        size = os.fstat(f.fileno()).st_size
        while pos < size:
            f.seek(pos)
            member, end, problem = self._inflate_member(f)
            if problem is None:
                resyncing = False
                for unit in self._warc_units(io.BytesIO(member), source, pos, member_offset=True):
                    yield unit
                pos = end
                continue
            # a corrupt member, a bomb, or one that runs to the end of the file (cut off, or a damaged header that
            # swallowed the members after it): count it once, then look for the next member
            if not resyncing:
                self._skip(problem, source, pos)
            start = pos
            pos = self._next_gzip_member(f, pos + 1, size)
            self._lost(pos - start)
            # until a member reads whole, a header that fails is a false match inside the lost bytes, not a record
            resyncing = True

    def _inflate_member(self, f: BinaryIO) -> tuple[bytes, int, str | None]:
        """(expanded bytes, offset after the member, problem) of the gzip member at `f`'s position; problem is
        None, "corrupt_gzip", "truncated" or "too_large" (expansion stopped at `max_member_bytes`)."""
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = bytearray()
        while not inflater.eof:
            chunk = f.read(_CHUNK)
            if not chunk:
                return bytes(out), f.tell(), "truncated"
            try:
                while chunk and not inflater.eof:
                    out += inflater.decompress(chunk, self.max_member_bytes + 1 - len(out))
                    if len(out) > self.max_member_bytes:
                        return b"", f.tell(), "too_large"
                    chunk = inflater.unconsumed_tail
            except zlib.error:
                return b"", f.tell(), "corrupt_gzip"
        return bytes(out), f.tell() - len(inflater.unused_data), None

    @staticmethod
    def _next_gzip_member(f: BinaryIO, start: int, size: int) -> int:
        """Offset of the next gzip header at or after `start`, or `size`."""
        f.seek(start)
        carry, base = b"", start
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                return size
            window = carry + chunk
            found = window.find(_GZIP_MAGIC)
            if found >= 0:
                return base - len(carry) + found
            carry = window[-(len(_GZIP_MAGIC) - 1):]
            base += len(chunk)

    def _warc_units(self, f: BinaryIO, source: SourceFile, base: int, member_offset: bool = False) -> Iterator[_Unit]:
        """The records of an uncompressed WARC stream (seekable), framing checked, each at most
        `max_page_bytes` + 2 x `max_header_bytes`. Offsets are `base` + the position in `f`, or `base`
        itself for the records of one gzip member."""
        def offset(pos: int) -> int:
            return base if member_offset else base + pos

        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        blank = True  # nothing but whitespace so far
        while True:
            start = f.tell()
            line = f.readline(self.max_header_bytes)
            if not line:
                if blank:
                    self._skip("empty", source, offset(0))  # whitespace only: one unit, counted
                return
            if not line.strip():
                continue  # blank lines between records
            blank = False
            if not line.startswith(b"WARC/"):
                self._skip("bad_warc_header", source, offset(start), line[:80].decode("utf-8", "backslashreplace"))
                self._resync(f, start + 1)  # a record may start later in this very line
                continue
            header, length, problem = self._warc_header(f, line)
            if problem == "truncated":
                self._skip(problem, source, offset(start))
                self._lost(size - start)
                return
            if problem is not None:
                self._skip(problem, source, offset(start))
                self._resync(f, start + len(line))
                continue
            content_start = f.tell()
            if content_start + length > size:
                # cut off, or a Content-Length that lies past the end: any record after this header still counts
                self._skip("truncated", source, offset(start))
                self._resync(f, content_start)
                continue
            if length > self.max_page_bytes + self.max_header_bytes:
                f.seek(content_start + length)
                content = b""  # never read into memory
            else:
                content = f.read(length)
            # the record ends where its length says if the two line ends the standard puts after a record follow,
            # or else blank lines and then the next record (or the file's end)
            after = f.read(4 + 5)
            rest = b"" if after.startswith(b"\r\n\r\n") else after.lstrip(b"\r\n")
            if rest and not rest.startswith(b"WARC/"):
                # a Content-Length that lies: look for the next record after this one's header, which may sit
                # inside the bytes the length claimed
                self._skip("bad_length", source, offset(start))
                self._resync(f, content_start)
                continue
            f.seek(content_start + length + (4 if after.startswith(b"\r\n\r\n") else len(after) - len(rest)))
            if length > self.max_page_bytes + self.max_header_bytes:
                self._skip("too_large", source, offset(start))
                continue
            yield _Unit(offset(start), header + content + b"\r\n\r\n")

    def _warc_header(self, f: BinaryIO, first: bytes) -> tuple[bytes, int, str | None]:
        """(header block, Content-Length, problem) of the record whose version line `first` was just read."""
        block, length = bytearray(first), None
        while True:
            line = f.readline(self.max_header_bytes)
            block += line
            if len(block) > self.max_header_bytes:
                return b"", 0, "header_too_large"
            if not line.endswith(b"\n") and len(block) < self.max_header_bytes:
                return b"", 0, "truncated"  # the file ends inside the header block
            if not line.strip():
                break
            name, sep, value = line.partition(b":")
            if not sep:
                return b"", 0, "bad_warc_header"
            if name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return b"", 0, "bad_warc_header"
        if length is None or length < 0:
            return b"", 0, "bad_warc_header"
        return bytes(block), length, None

    def _resync(self, f: BinaryIO, start: int) -> None:
        """Move `f` to the next `WARC/1.` at or after `start` (a record's first line; not only at a line start, since
        a damaged separator may have joined it to the line before), counting the bytes passed over."""
        f.seek(start)
        while True:
            pos = f.tell()
            line = f.readline(self.max_header_bytes)
            found = line.find(b"WARC/1.")
            if not line or found >= 0:
                pos += max(found, 0)
                f.seek(pos)
                self._lost(pos - start)
                return

    def _warc_document(self, unit: _Unit, index: int, number: int, source: SourceFile) -> Document | None:
        record = next(iter(ArchiveIterator(io.BytesIO(unit.data), check_digests=False)), None)
        if record is None:
            self._skip("bad_warc_header", source, unit.offset)
            return None
        if record.rec_type not in ("response", "conversion"):
            self.stat_update("other_records")  # warcinfo, request, metadata records carry no page
            return None
        raw = record.content_stream().read(self.max_page_bytes + 1)
        if len(raw) > self.max_page_bytes:
            self._skip("too_large", source, unit.offset)
            return None
        url = record.rec_headers.get_header("WARC-Target-URI")
        if record.rec_type == "conversion":  # WET: text already extracted by the crawler
            text, reason = decode_html(raw, "utf-8")
            if text is None:
                self._skip(reason, source, unit.offset)
                return None
            return self._document(text, f"{source.name}#{number}", source, [index, number], url, fmt="text")
        content_type, status = "", None
        if record.http_headers is not None:
            content_type = record.http_headers.get_header("Content-Type") or ""
            status = record.http_headers.get_statuscode()
        content_type = content_type or record.rec_headers.get_header("WARC-Identified-Payload-Type") or ""
        if status and not str(status).startswith("2"):
            self._skip("http_status", source, unit.offset)  # redirects and error pages carry no article
            return None
        mime = content_type.split(";")[0].strip().lower()
        looks_html = b"<html" in raw[:2048].lower() or b"<!doctype html" in raw[:2048].lower()
        if mime not in ("text/html", "application/xhtml+xml") and not (not mime and looks_html):
            self._skip("not_html", source, unit.offset)
            return None
        text, reason = decode_html(raw, _http_charset(content_type))
        if text is None:
            self._skip(reason, source, unit.offset)
            return None
        url = url or canonical_url(text)
        return self._document(text, f"{source.name}#{number}", source, [index, number], url)

    # JSONL --------------------------------------------------------------------------------------------------

    def _read_jsonl(self, index: int, source: SourceFile) -> Iterator[Document]:
        offset = 0  # of the current line, in the (decompressed) text
        any_line = False
        try:
            with (gzip.open if source.is_gzip else open)(source.path, "rb") as f:
                number = -1
                while True:
                    # readline with a cap: a 50 MB line is never held whole, only skipped
                    line = f.readline(self.max_page_bytes + 1)
                    if not line:
                        if not any_line:
                            self._skip("empty", source, 0)  # whitespace only: one unit, counted
                        break
                    number += 1
                    start, offset = offset, offset + len(line)
                    if len(line) > self.max_page_bytes and not line.endswith(b"\n"):
                        any_line, passed = True, len(line)
                        while line and not line.endswith(b"\n") and passed <= self.max_member_bytes:
                            line = f.readline(_CHUNK)
                            passed += len(line)
                        offset = start + passed
                        self._skip("too_large", source, start)
                        if passed > self.max_member_bytes:  # no end in sight (a gzip bomb): the file's rest is lost
                            return
                        continue
                    if not line.strip():
                        continue
                    any_line = True
                    try:
                        doc = self._jsonl_document(line, index, number, source, start)
                    except Exception as error:  # noqa: BLE001 (any exception on one line skips that line)
                        self._skip(ERROR_PREFIX + type(error).__name__, source, start, str(error))
                        continue
                    if doc is not None:
                        yield doc
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            self._skip("truncated", source, offset, str(error))
        except OSError as error:
            self._skip("unreadable", source, offset, str(error))

    def _jsonl_document(self, line: bytes, index: int, number: int, source: SourceFile, offset: int) -> Document | None:
        try:
            row = json.loads(line)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            self._skip("invalid_json", source, offset, str(error))
            return None
        if not isinstance(row, dict) or not isinstance(row.get("html", row.get("text")), str):
            self._skip("invalid_json", source, offset, "not an object with a \"html\" or \"text\" string")
            return None
        fmt = "html" if isinstance(row.get("html"), str) else "text"
        text = row[fmt]
        if not text.strip():
            self._skip("empty", source, offset)
            return None
        doc_id = str(row["id"]) if row.get("id") is not None else f"{source.name}#{number}"
        meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        url = row.get("url") or meta.get("url")
        return self._document(text, doc_id, source, [index, number], url if isinstance(url, str) else None, fmt=fmt)
