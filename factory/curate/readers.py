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

The reader keeps its own framing, so one broken record loses only itself, and its cost stays linear in the bytes
it reads at C speed (runs of blank lines, resynchronisation, overlong lines are scanned, never stepped through in
Python), bounded by caps in bytes and counts (`factory.curate.streams`, `factory.curate.limits`):
- A `.gz` file is inflated member after member (the WARC standard puts each record in its own member, held and
  CRC-checked before it is parsed; `gzip x.warc` puts a whole crawl in one, which is read record by record as it
  inflates, past `max_member_bytes`). A corrupt member (`corrupt_gzip`), one that runs to the end of the file
  (`truncated`, what inflated before the cut is kept) and one that expands past `max_expansion_ratio` (a gzip
  bomb: `too_large`, the rest never expanded) cost the unit they cut, counted once, and reading resumes at the
  next gzip header.
- A file stops, counted once, when it has expanded past `max_file_bytes` (or `max_expansion_ratio` x its size)
  (`too_large`), or held more than `max_records_per_kib` records per KiB on disk (`too_many_records`).
- WARC record framing (the `WARC/1.x` line, header block, `Content-Length`, the blank lines after the
  block) is checked before warcio parses the record. A broken header block (`bad_warc_header`, or
  `header_too_large` past `max_header_bytes`) or a `Content-Length` that does not end at the next record
  (`bad_length`) skips that record and resumes at the next `WARC/1.` (found wherever it falls). Bytes passed over
  while looking for the next record count under `skipped_lost_bytes` (a byte count, not a reason).
- A record's HTTP body is undone from its transfer and content codings (chunked; gzip, deflate, br) and decoded to
  text as a browser would (`factory.curate.decoding`: byte-order marks, the declared charset, windows-1252 for
  bytes that are not UTF-8), so no page is lost to its encoding.
- A unit larger than `max_page_bytes` is skipped as `too_large` without being held in memory; a JSONL line
  longer than that is passed over to its end, and the lines after it are read.

Text, ids and addresses are valid UTF-8: a lone surrogate (a JSON `\\ud800` escape) becomes U+FFFD. File names may
be any bytes: `SourceFile.name` is the escaped form (`os.fsencode`, then backslash-replace). A symbolic link in a
source folder that leads nowhere (a loop, a missing target) is listed and counted `unreadable`, never followed
forever. Documents carry `metadata["order"] = [file_index, record_index]`, so outputs from parallel tasks can be
put back in input order, and `metadata["format"]` ("html" or "text"), which tells the extraction step what to do.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseReader
from warcio.archiveiterator import ArchiveIterator

from factory.curate.decoding import BOMS, dechunk, decode_content, decode_html, http_charset
from factory.curate.limits import (
    DEFAULT_MAX_EXPANSION_RATIO,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_MEMBER_BYTES,
    DEFAULT_MAX_PAGE_BYTES,
    DEFAULT_MAX_RECORDS_PER_KIB,
)
from factory.curate.streams import CHUNK, ByteStream, FileBudget, GzipChunks, ReadCaps, plain_chunks
from factory.documents import valid_text
from factory.errors import InputError
from factory.logs import get_logger, progress

HTML_SUFFIXES = (".html", ".htm")
WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
SUFFIXES = HTML_SUFFIXES + WARC_SUFFIXES + JSONL_SUFFIXES
# reasons always reported (0 when absent); parsers' exceptions add `error_<ExceptionType>` reasons
SKIP_REASONS = ("empty", "binary", "undecodable", "truncated", "not_html", "http_status", "unreadable",
                "too_large", "too_many_records", "invalid_json", "corrupt_gzip", "bad_warc_header", "header_too_large",
                "bad_length")
# reasons that mean an input unit was damaged or could not be parsed (what the error budget counts), as opposed
# to a page the reader declines by policy (empty, binary, not HTML, an error status, over a size or count cap)
DAMAGE_REASONS = ("undecodable", "truncated", "unreadable", "invalid_json", "corrupt_gzip", "bad_warc_header",
                  "header_too_large", "bad_length")
ERROR_PREFIX = "error_"
LOST_BYTES = "lost_bytes"  # reader stat `skipped_lost_bytes`: bytes passed over while resynchronising

_RECORD_START = b"WARC/1."
_LINK = re.compile(r"<link\b", re.IGNORECASE)
# one attribute of a tag: name, then an optional value (quoted, or up to the next space); each match is linear
_ATTRIBUTE = re.compile(r"""([^\s"'=<>/`]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")

log = get_logger("factory.curate.readers")


def is_damage(reason: str) -> bool:
    """Whether a skip reason means the unit was damaged or broke a parser (counted by the error budget)."""
    return reason in DAMAGE_REASONS or reason.startswith(ERROR_PREFIX)


def escaped_name(path: str | bytes | Path) -> str:
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


def _wanted(name: str | bytes) -> bool:
    return os.fsdecode(name).lower().endswith(SUFFIXES)


def _folder_files(root: Path) -> list[tuple[bytes, bytes]]:
    """(path relative to `root`, full path) of every wanted file under `root`, sorted by the relative path's bytes
    (the same order whatever the file system's encoding). Links to folders are not followed (no loop can hold the
    walk); a link that leads nowhere (a loop, a missing target) and a folder that cannot be listed (no permission,
    a path past the system's length limit) are listed too, for the reader to count as unreadable; devices and pipes
    are not inputs."""
    base = os.fsencode(root)
    found = []

    def unlistable(error: OSError) -> None:
        if isinstance(error.filename, bytes) and error.filename != base:
            found.append((os.path.relpath(error.filename, base), error.filename))

    for folder, _, names in os.walk(base, onerror=unlistable):
        for name in names:
            if not _wanted(name):
                continue
            full = os.path.join(folder, name)
            try:
                if not stat.S_ISREG(os.stat(full).st_mode):
                    continue
            except OSError:  # ELOOP, a dangling link, a name too long: an input that cannot be read, counted
                if not os.path.islink(full):
                    continue
            found.append((os.path.relpath(full, base), full))
    return sorted(found)


def list_sources(sources: list[str]) -> list[SourceFile]:
    """All HTML/WARC/WET/JSONL files under `sources` (files or folders), sorted; raises InputError for a bad entry."""
    found: list[SourceFile] = []
    for entry in sources:
        root = Path(entry).expanduser()
        if not root.exists():
            what = ("is a symbolic link that leads nowhere (a loop or a missing target)" if root.is_symlink()
                    else "does not exist")
            raise InputError(f"curate source {escaped_name(entry)!r} {what} (config field `sources`)")
        if root.is_file():
            if not _wanted(root.name):
                raise InputError(f"curate source {escaped_name(entry)!r} is not a {'/'.join(SUFFIXES)} file")
            files = [SourceFile(escaped_name(root.name), root)]
        else:
            prefix = os.fsencode(root.resolve().name) + b"/"
            files = [SourceFile(escaped_name(prefix + rel), Path(os.fsdecode(full))) for rel, full in _folder_files(root)]
        if not files:
            raise InputError(f"curate source {escaped_name(entry)!r} holds no {'/'.join(SUFFIXES)} files")
        found += files
    names = [f.name for f in found]
    if len(set(names)) != len(names):  # two sources with the same folder name: keep names unique, still stable
        found = [SourceFile(f"{i}/{f.name}", f.path) for i, f in enumerate(found)]
    return found


def canonical_url(html: str) -> str | None:
    """The page's `<link rel="canonical">` address, if it declares one (in its first 20,000 characters).

    Tag by tag, attribute by attribute: each `<link` is read up to its `>` once, so the cost is linear in the
    characters read, whatever the page holds (a single regular expression over the page backtracked cubically).
    """
    head, pos = html[:20000], 0
    while (match := _LINK.search(head, pos)) is not None:
        end = head.find(">", match.end())
        end = len(head) if end < 0 else end
        rel = href = None
        for attr in _ATTRIBUTE.finditer(head, match.end(), end):
            name = attr.group(1).lower()
            value = attr.group(2) if attr.group(2) is not None else attr.group(3) if attr.group(3) is not None else attr.group(4)
            if name == "rel" and rel is None:
                rel = value
            elif name == "href" and href is None:
                href = value
        if rel is not None and href and "canonical" in rel.lower().split():
            return href
        pos = end + 1
    return None


def _utf8_lines(stream: ByteStream) -> ByteStream:
    """A JSONL stream as UTF-8: a UTF-8 byte-order mark passed over, a UTF-16 or UTF-32 one decoded as it streams
    (a line end in those is not the byte 0x0A alone)."""
    head = stream.peek(4)
    for bom, codec in BOMS:
        if head.startswith(bom):
            stream.skip(len(bom))
            if codec == "utf-8":
                return stream
            return ByteStream(_transcoded(stream, codec))
    return stream


def _transcoded(stream: ByteStream, codec: str) -> Iterator[bytes | None]:
    decoder = codecs.getincrementaldecoder(codec)("replace")
    while True:
        chunk = stream.read(CHUNK)
        if chunk:
            yield decoder.decode(chunk).encode("utf-8")
        elif stream.at_break:  # a failed gzip member: the break goes on, the decoder starts afresh after it
            stream.resume()
            decoder.reset()
            yield None
        else:
            yield decoder.decode(b"", final=True).encode("utf-8")
            return


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
    is given, each task writes its per-reason samples there as `<rank>.json` at the end. The caps are
    `factory.stages.curate.Config`'s fields of the same names.
    """

    name = "🌐 Web pages (HTML, WARC, WET, JSONL)"

    def __init__(self, files: list[SourceFile], max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
                 max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
                 samples_dir: str | Path | None = None, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 max_expansion_ratio: float = DEFAULT_MAX_EXPANSION_RATIO,
                 max_records_per_kib: int = DEFAULT_MAX_RECORDS_PER_KIB):
        super().__init__()
        self.files = list(files)
        unit = max_page_bytes + 2 * max_header_bytes
        self.caps = ReadCaps(max_page_bytes, max_header_bytes, max(max_member_bytes, unit), max(max_file_bytes, unit),
                             max_expansion_ratio, max_records_per_kib)
        self.max_page_bytes = max_page_bytes
        self.max_header_bytes = max_header_bytes
        self.samples_dir = None if samples_dir is None else str(samples_dir)
        self.samples: dict[str, dict] = {}  # reason -> {"file", "offset", "detail"} of its first skip
        self._budget = FileBudget(self.caps, 0, False)  # the current file's

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        mine = [(index, source) for index, source in enumerate(self.files) if index % world_size == rank]
        for index, source in progress(mine, desc=f"curate: read files (task {rank})"):
            try:
                st = source.path.stat()
            except OSError as error:  # a link that leads nowhere, a file gone since the listing
                self._skip("unreadable", source, 0, str(error))
                continue
            if not stat.S_ISREG(st.st_mode):  # a pipe or device would be read forever
                self._skip("unreadable", source, 0, "not a regular file")
                continue
            if st.st_size == 0:
                self._skip("empty", source, 0)  # an empty WARC or JSONL file would otherwise pass unnoticed
                continue
            self._budget = FileBudget(self.caps, st.st_size, source.is_gzip)
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
        self._budget.spend_record()
        if reason not in self.samples:  # logged once per reason, with the first file and offset as a sample
            self.samples[reason] = {"file": source.name, "offset": offset, "detail": detail[:200]}
            log.warning("curate_skip", reason=reason, file=source.name, offset=offset, detail=detail[:200])

    def _lost(self, n_bytes: int) -> None:
        if n_bytes > 0:
            self.stat_update(f"skipped_{LOST_BYTES}", value=n_bytes)

    def _document(self, text: str, doc_id: str, source: SourceFile, order: list[int], url: str | None,
                  fmt: str = "html") -> Document:
        self._budget.spend_record()
        return Document(text=valid_text(text), id=valid_text(doc_id),
                        metadata={"source": source.name, "url": None if url is None else valid_text(url), "order": order,
                                  "format": fmt})

    def _stream(self, f, source: SourceFile) -> tuple[ByteStream, Callable[[int], int], GzipChunks | None]:
        """The file's (inflated) bytes as a stream; the file offset to report for a stream position (the gzip
        member's, in a gzipped file); the gzip member source, if any."""
        size = os.fstat(f.fileno()).st_size
        if not source.is_gzip:
            return ByteStream(plain_chunks(f, self._budget), size=size), lambda pos: pos, None
        chunks = GzipChunks(f, size, self.caps, self._budget, lambda reason, offset, detail: self._skip(reason, source, offset, detail))
        return ByteStream(chunks), chunks.member_offset, chunks

    def _end_of_file(self, source: SourceFile, offset: int, chunks: GzipChunks | None) -> None:
        """Count what a file's end leaves: a spent budget (the rest of the file, once), bytes lost between members."""
        if self._budget.exhausted:
            self._skip(self._budget.exhausted, source, offset)
        if chunks is not None:
            self._lost(chunks.lost)

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
                stream, where, chunks = self._stream(f, source)
                for number, unit in enumerate(self._warc_units(stream, source, where)):
                    try:
                        doc = self._warc_document(unit, index, number, source)
                    except Exception as error:  # noqa: BLE001 (any parser's exception on one record skips it)
                        self._skip(ERROR_PREFIX + type(error).__name__, source, unit.offset, str(error))
                        continue
                    if doc is not None:
                        yield doc
                self._end_of_file(source, where(stream.tell()), chunks)
        except OSError as error:
            self._skip("unreadable", source, 0, str(error))

    def _resync(self, stream: ByteStream, start: int) -> None:
        """Move to the next `WARC/1.` at or after `start` (a record's first line; not only at a line start, since a
        damaged separator may have joined it to the line before), counting the bytes passed over. The search
        keeps the bytes that may begin a match across reads, so a record start is found wherever it falls."""
        stream.seek(start)
        here = stream.tell()
        stream.skip_to(_RECORD_START)
        self._lost(stream.tell() - here)

    def _warc_units(self, stream: ByteStream, source: SourceFile, where: Callable[[int], int]) -> Iterator[_Unit]:
        """The records of a WARC stream, framing checked, each at most `max_page_bytes` + 2 x `max_header_bytes`.
        A record cut by a gzip member's failure (a break in the stream) is lost with the member, which is counted."""
        caps, budget = self.caps, self._budget
        seen = False  # anything but whitespace so far (or a failed member, counted already)
        while not budget.exhausted:
            stream.skip_blank(count_lines=False)
            start = stream.tell()
            stream.mark(start)  # the record's bytes are kept until it is cut out or resynchronised past
            line = stream.readline(caps.max_header_bytes)
            if stream.at_break and not line.endswith(b"\n"):
                stream.resume()  # a record cut by a failed member: lost with it
                seen = True
                continue
            if not line:
                if not seen:
                    self._skip("empty", source, where(0))  # whitespace only: one unit, counted
                return
            seen = True
            if not budget.room():  # another record, past the file's share: the rest of the file is one skip
                return
            if not line.startswith(b"WARC/"):
                self._skip("bad_warc_header", source, where(start), line[:80].decode("utf-8", "backslashreplace"))
                self._resync(stream, start + 1)  # a record may start later in this very line
                continue
            header, length, problem = self._warc_header(stream, line)
            if problem == "break":
                stream.resume()
                continue
            if problem == "truncated":
                if not budget.exhausted:
                    self._skip(problem, source, where(start))
                return
            if problem is not None:
                self._skip(problem, source, where(start))
                self._resync(stream, start + len(line))
                continue
            content_start = stream.tell()
            if stream.size is not None and content_start + length > stream.size:
                # cut off, or a Content-Length that lies past the end: any record after this header still counts
                self._skip("truncated", source, where(start))
                self._resync(stream, content_start)
                continue
            big = length > caps.max_page_bytes + caps.max_header_bytes
            got = stream.skip(length) if big else len(content := stream.read(length))
            if got < length:
                if stream.at_break:  # cut by a failed member, counted with it
                    stream.resume()
                    continue
                if not budget.exhausted:
                    self._skip("truncated", source, where(start))
                    if not big:  # a Content-Length past the end: look for records inside what it claimed
                        self._resync(stream, content_start)
                        continue
                return
            # the record ends where its length says if the two line ends the standard puts after a record follow,
            # or else blank lines and then the next record (or the stream's end)
            after = stream.peek(4 + 5)
            rest = b"" if after.startswith(b"\r\n\r\n") else after.lstrip(b"\r\n")
            if rest and not rest.startswith(b"WARC/"):
                # a Content-Length that lies: look for the next record after this one's header, which may sit
                # inside the bytes the length claimed
                self._skip("bad_length", source, where(start))
                self._resync(stream, content_start)
                continue
            stream.skip(4 if after.startswith(b"\r\n\r\n") else len(after) - len(rest))
            if big:
                self._skip("too_large", source, where(start))
                continue
            yield _Unit(where(start), header + content + b"\r\n\r\n")

    def _warc_header(self, stream: ByteStream, first: bytes) -> tuple[bytes, int, str | None]:
        """(header block, Content-Length, problem) of the record whose version line `first` was just read; problem
        "break" when a failed gzip member cut the block (counted with the member)."""
        limit = self.caps.max_header_bytes
        block, length = bytearray(first), None
        while True:
            line = stream.readline(limit)
            block += line
            if len(block) > limit:
                return b"", 0, "header_too_large"
            if not line.endswith(b"\n") and len(block) < limit:
                return b"", 0, "break" if stream.at_break else "truncated"  # the stream ends inside the header block
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

    def _warc_document(self, unit: _Unit, index: int, number: int, source: SourceFile) -> Document | None:
        record = next(iter(ArchiveIterator(io.BytesIO(unit.data), check_digests=False)), None)
        if record is None:
            self._skip("bad_warc_header", source, unit.offset)
            return None
        if record.rec_type not in ("response", "conversion"):
            self.stat_update("other_records")  # warcinfo, request, metadata records carry no page
            self._budget.spend_record()
            return None
        # the body as sent: warcio's content_stream() would undo its codings, with no bound on what comes out
        raw = record.raw_stream.read(self.max_page_bytes + 1)
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
        content_type, status, codings = "", None, ""
        if record.http_headers is not None:
            headers = record.http_headers
            content_type = headers.get_header("Content-Type") or ""
            status = headers.get_statuscode()
            transfer = [t.strip() for t in (headers.get_header("Transfer-Encoding") or "").lower().split(",")]
            if "chunked" in transfer:
                raw = dechunk(raw)
            # transfer codings are applied after the content's: undone first (decode_content undoes last first)
            codings = ", ".join([headers.get_header("Content-Encoding") or ""] + [t for t in transfer if t != "chunked"])
        content_type = content_type or record.rec_headers.get_header("WARC-Identified-Payload-Type") or ""
        if status and not str(status).startswith("2"):
            self._skip("http_status", source, unit.offset)  # redirects and error pages carry no article
            return None
        raw, problem = decode_content(raw, codings, self.max_page_bytes)
        if problem is not None:
            self._skip(problem, source, unit.offset)
            return None
        mime = content_type.split(";")[0].strip().lower()
        head = raw[:2048].lower()
        looks_html = b"<html" in head or b"<!doctype html" in head
        if mime not in ("text/html", "application/xhtml+xml") and not (not mime and looks_html):
            self._skip("not_html", source, unit.offset)
            return None
        text, reason = decode_html(raw, http_charset(content_type))
        if text is None:
            self._skip(reason, source, unit.offset)
            return None
        url = url or canonical_url(text)
        return self._document(text, f"{source.name}#{number}", source, [index, number], url)

    # JSONL --------------------------------------------------------------------------------------------------

    def _read_jsonl(self, index: int, source: SourceFile) -> Iterator[Document]:
        limit = self.max_page_bytes
        try:
            with source.path.open("rb") as f:
                stream, _, chunks = self._stream(f, source)
                stream = _utf8_lines(stream)
                number, seen = 0, False  # the next line's number (blank lines count); anything but blank lines yet
                while not self._budget.exhausted:
                    blank, start = stream.skip_blank()
                    number += blank
                    # a cap: a 50 MB line is never held whole, only passed over
                    line = stream.readline(limit + 1)
                    if stream.at_break and not line.endswith(b"\n"):
                        stream.resume()  # a line cut by a failed gzip member: lost with it (counted once)
                        seen = True
                        continue
                    if not line or not self._budget.room():
                        break
                    seen = True
                    number += 1
                    if len(line) > limit and not line.endswith(b"\n"):
                        # passed over to its end, however far (at C speed, within the file's caps)
                        if stream.skip_to(b"\n"):
                            stream.skip(1)
                        self._skip("too_large", source, start)
                        continue
                    try:
                        doc = self._jsonl_document(line, index, number - 1, source, start)
                    except Exception as error:  # noqa: BLE001 (any exception on one line skips that line)
                        self._skip(ERROR_PREFIX + type(error).__name__, source, start, str(error))
                        continue
                    if doc is not None:
                        yield doc
                if not seen:
                    self._skip("empty", source, 0)  # whitespace only: one unit, counted
                self._end_of_file(source, stream.tell(), chunks)
        except OSError as error:
            self._skip("unreadable", source, 0, str(error))

    def _jsonl_document(self, line: bytes, index: int, number: int, source: SourceFile, offset: int) -> Document | None:
        if not line.lstrip().startswith(b"{"):  # not an object: no need to parse it to know (junk lines cost less)
            self._skip("invalid_json", source, offset, "not an object with a \"html\" or \"text\" string")
            return None
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
