"""The byte streams the curate readers parse, and what one input file may cost to read.

    budget = FileBudget(caps, size_on_disk, gz)
    chunks = GzipChunks(f, size, caps, budget, report) if gz else plain_chunks(f, budget)
    stream = ByteStream(chunks, size=None if gz else size)
    stream.skip_blank(); line = stream.readline(limit); stream.skip_to(b"WARC/1.")

`ByteStream` is a forward window over chunks: it holds one unit (a record, a line) at most, and finds line ends,
record starts and runs of blank lines with `bytes.find` and compiled patterns, at C speed, so a gigabyte of
newlines costs what reading it costs, not a Python step per line.

`GzipChunks` inflates a gzip file member after member, resuming at the next gzip header past a member that
fails (`corrupt_gzip`, `truncated`, `too_large`): the stream then shows a break (`ByteStream.at_break`), and the
unit cut by it is lost with the member, counted once. A member's bytes are held until its CRC is checked while
they fit `max_member_bytes` (a WARC written by the standard, one record per member, is never parsed from unchecked
bytes); a larger member (`gzip x.warc`, a whole crawl in one member) is parsed as it inflates, as Common Crawl's
tools read it, record by record, so what it holds is never lost for its size. What a file may expand to is
bounded (`ReadCaps`, `FileBudget`): a member and a whole file by the ratio of expanded to compressed bytes past
one unit's worth (a gzip bomb stops within a few megabytes, whatever its size on disk, and the next member is
read), a file by bytes (`max_file_bytes`) and by records per KiB on disk (gzipped millions of tiny lines).
"""

from __future__ import annotations

import re
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from factory.curate.limits import (
    DEFAULT_MAX_EXPANSION_RATIO,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_MEMBER_BYTES,
    DEFAULT_MAX_PAGE_BYTES,
    DEFAULT_MAX_RECORDS_PER_KIB,
    RECORDS_FLOOR,
)

CHUNK = 1 << 16  # bytes read from disk at a time
OUT_CHUNK = 1 << 20  # most bytes one inflate call gives: a bomb is stopped within a megabyte of a cap
GZIP_MAGIC = b"\x1f\x8b\x08"
_BLANK = b" \t\r\n\x0b\x0c"  # bytes.strip()'s whitespace
_NON_BLANK = re.compile(rb"[^ \t\r\n\x0b\x0c]")
_NEWLINES = b"\n" * OUT_CHUNK
_BLANK_TAIL = 1 << 20  # whitespace after the last line end held at most, looking for the line's content


@dataclass(frozen=True)
class ReadCaps:
    """What the reader may expand and hold; see `factory.stages.curate.Config` for each field's meaning."""

    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_expansion_ratio: float = DEFAULT_MAX_EXPANSION_RATIO
    max_records_per_kib: int = DEFAULT_MAX_RECORDS_PER_KIB

    @property
    def unit_bytes(self) -> int:
        """The largest unit the reader holds: a page and two header blocks (a WARC record's, its HTTP response's)."""
        return self.max_page_bytes + 2 * self.max_header_bytes


class FileBudget:
    """What one file may still cost: expanded bytes (`max_file_bytes`, and one unit plus `max_expansion_ratio` x its
    size on disk for a gzipped one) and records (`max_records_per_kib` per KiB on disk, never below
    `RECORDS_FLOOR`)."""

    def __init__(self, caps: ReadCaps, size: int, gz: bool):
        cap = caps.max_file_bytes
        if gz:
            cap = min(cap, caps.unit_bytes + int(caps.max_expansion_ratio * size))
        self.bytes_left = cap
        self.records_left = max(RECORDS_FLOOR, caps.max_records_per_kib * size // 1024)
        self.exhausted: str | None = None  # "too_large" or "too_many_records" once spent: the rest of the file is skipped

    def spend_bytes(self, n: int) -> bool:
        """Count `n` more expanded bytes; False (and `exhausted`) once past the file's cap."""
        self.bytes_left -= n
        if self.bytes_left < 0:
            self.exhausted = self.exhausted or "too_large"
        return self.bytes_left >= 0

    def spend_record(self) -> None:
        """Count one more record (a document, a skip, a record that carries no page)."""
        self.records_left -= 1

    def room(self) -> bool:
        """Whether another record may be read; once not, `exhausted` says so (the rest of the file is one skip)."""
        if self.records_left <= 0:
            self.exhausted = self.exhausted or "too_many_records"
        return not self.exhausted


def plain_chunks(f: BinaryIO, budget: FileBudget) -> Iterator[bytes]:
    """An uncompressed file's bytes, `CHUNK` at a time, up to the budget's bytes."""
    while chunk := f.read(CHUNK):
        if not budget.spend_bytes(len(chunk)):
            return
        yield chunk


# (reason, offset in the file, detail) of a member that failed, counted once per damaged stretch
Report = Callable[[str, int, str], None]


class GzipChunks:
    """The inflated bytes of a gzip file, member after member, as an iterator of chunks, with `None` between
    chunks where a member failed (a break: the bytes around it do not join). `lost` counts the compressed bytes
    passed over; `member_offset(position)` names the member that held a position of the inflated stream."""

    def __init__(self, f: BinaryIO, size: int, caps: ReadCaps, budget: FileBudget, report: Report):
        self.f, self.size, self.caps, self.budget, self.report = f, size, caps, budget, report
        self.lost = 0
        self._delivered = 0  # inflated bytes handed out so far: the stream position of the next chunk
        self._starts: list[int] = []  # stream positions where members' bytes begin ...
        self._offsets: list[int] = []  # ... and those members' offsets in the file

    def member_offset(self, position: int) -> int:
        """Offset in the file of the gzip member whose inflated bytes hold stream `position`."""
        i = bisect_right(self._starts, position) - 1
        if i > 64:  # positions are asked in order: the older members are no longer needed
            del self._starts[:i], self._offsets[:i]
            i = 0
        return self._offsets[i] if i >= 0 else 0

    def __iter__(self) -> Iterator[bytes | None]:
        pos, resyncing = 0, False
        while pos < self.size and not self.budget.exhausted:
            self.f.seek(pos)
            first, end, problem = True, pos, None
            member = self._member(pos)
            for piece in member:
                if isinstance(piece, tuple):  # the member's end: (offset after it, problem)
                    end, problem = piece
                    break
                if first:
                    self._starts.append(self._delivered)
                    self._offsets.append(pos)
                    first = False
                self._delivered += len(piece)
                yield piece
            if problem is None:
                resyncing = False
                pos = end
                continue
            if self.budget.exhausted:  # the file's own cap: the reader counts the rest of the file once
                self.lost += self.size - pos
                return
            # a corrupt member, a bomb, or one that runs to the end of the file (cut off, or a damaged header that
            # swallowed the members after it): counted once, then the next member is looked for
            if not resyncing or problem == "too_large":
                self.report(problem, pos, "")
            yield None
            start = pos
            pos = self._next_member(pos + 1)
            self.lost += pos - start
            # until a member reads whole, a header that fails is a false match inside the lost bytes, not a record
            resyncing = True

    def _member(self, offset: int) -> Iterator[bytes | tuple[int, str | None]]:
        """The inflated bytes of the member at `offset`, then (offset after it, problem or None)."""
        caps = self.caps
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        held: list[bytes] = []  # bytes of a member that may still fit one unit: handed out once its CRC is checked
        out = read = 0
        holding = True
        while not inflater.eof:
            data = self.f.read(CHUNK)
            if not data:  # cut off: what inflated is sound (no CRC to check it by), the unit it cuts is lost
                if held:
                    yield b"".join(held)
                yield offset + read, "truncated"
                return
            read += len(data)
            try:
                while data:
                    piece = inflater.decompress(data, OUT_CHUNK)
                    data = inflater.unconsumed_tail
                    out += len(piece)
                    consumed = read - len(data)
                    if out > caps.unit_bytes + caps.max_expansion_ratio * consumed or not self.budget.spend_bytes(len(piece)):
                        yield offset + read, "too_large"  # a bomb: the rest of it is never expanded
                        return
                    if holding:
                        held.append(piece)
                        if out > caps.max_member_bytes:  # too large to hold: parsed as it inflates
                            holding = False
                            yield b"".join(held)
                            held = []
                    elif piece:
                        yield piece
                    if inflater.eof:
                        break
            except zlib.error:
                yield offset + read, "corrupt_gzip"
                return
        if held:
            yield b"".join(held)
        yield offset + read - len(inflater.unused_data), None

    def _next_member(self, start: int) -> int:
        """Offset of the next gzip header at or after `start`, or the file's size."""
        self.f.seek(start)
        carry, base = b"", start
        while True:
            chunk = self.f.read(CHUNK)
            if not chunk:
                return self.size
            window = carry + chunk
            found = window.find(GZIP_MAGIC)
            if found >= 0:
                return base - len(carry) + found
            carry = window[-(len(GZIP_MAGIC) - 1):]
            base += len(chunk)


class ByteStream:
    """A forward-only window over chunks of bytes (`None` between chunks marks a break, see `GzipChunks`).

    Reads stop at a break as at the end (`at_break` tells them apart; `resume()` goes on past it). `mark()` keeps
    the bytes from a position so that `seek` may return to them (one record's worth); `skip` and `skip_to` hold
    nothing. `size`, when known (a plain file), lets a parser check a length against the end before following it.
    """

    def __init__(self, chunks, size: int | None = None):
        self._chunks = iter(chunks)
        self._buf = b""
        self._pos = 0  # read position in _buf
        self._base = 0  # stream position of _buf[0]
        self._mark: int | None = None
        self.size = size
        self.eof = False
        self.at_break = False

    def tell(self) -> int:
        return self._base + self._pos

    def mark(self, position: int | None) -> None:
        """Keep the bytes from stream `position` on (None: keep nothing behind the read position)."""
        self._mark = position

    def resume(self) -> None:
        self.at_break = False

    def _more(self) -> bool:
        """Append the next chunk (dropping what is behind the read position and the mark); False at a break or the end."""
        if self.eof or self.at_break:
            return False
        chunk = next(self._chunks, False)
        if chunk is False:
            self.eof = True
            return False
        if chunk is None:
            self.at_break = True
            return False
        keep = self._pos if self._mark is None else max(0, min(self._pos, self._mark - self._base))
        self._buf = self._buf[keep:] + chunk if keep < len(self._buf) else chunk
        self._base += keep
        self._pos -= keep
        return True

    def _fill(self, n: int) -> bool:
        """At least `n` bytes past the read position, if the stream has them before a break or its end."""
        while len(self._buf) - self._pos < n:
            if not self._more():
                return False
        return True

    def seek(self, position: int) -> bool:
        """Move to stream `position`: back within what is held, or forward; False if it is no longer held or past
        a break or the end."""
        here = self.tell()
        if position >= here:
            return self.skip(position - here) == position - here
        if position < self._base:
            return False
        self._pos = position - self._base
        return True

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._pos:self._pos + n]

    def read(self, n: int) -> bytes:
        self._fill(n)
        out = self._buf[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def readline(self, limit: int) -> bytes:
        """The next line with its line end, or its first `limit` bytes, or what is left before a break or the end."""
        searched = 0  # bytes past the read position known to hold no line end
        while True:
            end = self._buf.find(b"\n", self._pos + searched, self._pos + limit)
            if end >= 0:
                out = self._buf[self._pos:end + 1]
                self._pos = end + 1
                return out
            searched = len(self._buf) - self._pos
            if searched >= limit or not self._more():
                return self.read(limit)

    def skip(self, n: int) -> int:
        """Pass over up to `n` bytes without holding them; the number passed (less at a break or the end)."""
        self._mark = None
        done = 0
        while True:
            step = min(n - done, len(self._buf) - self._pos)
            self._pos += step
            done += step
            if done >= n or not self._more():
                return done

    def skip_to(self, needle: bytes) -> bool:
        """Pass over bytes up to the next `needle` (left unread); False if a break or the end comes first."""
        self._mark = None
        while True:
            found = self._buf.find(needle, self._pos)
            if found >= 0:
                self._pos = found
                return True
            # keep the last bytes that may start the needle, drop the rest
            self._pos = max(self._pos, len(self._buf) - len(needle) + 1)
            if not self._more():
                self._pos = len(self._buf)
                return False

    def skip_blank(self, count_lines: bool = True) -> tuple[int, int]:
        """Pass over whole lines of whitespace at C speed (a gigabyte of newlines in a second or so, held a chunk at a
        time); (line ends passed, or 0 when not `count_lines`; stream position where the next line starts)."""
        lines, line_start = 0, self.tell()
        while True:
            buf, pos = self._buf, self._pos
            match = _NON_BLANK.search(buf, pos, pos + 256)  # the usual case: a line starts here or after a line end
            if match is not None:
                stop = match.start()
            elif pos + 256 >= len(buf):
                stop = len(buf)
            else:  # a long run: tested and stripped in C, not matched byte by byte
                rest = buf[pos:]
                stop = len(buf) if rest.isspace() else len(buf) - len(rest.lstrip(_BLANK))
            last = buf.rfind(b"\n", pos, stop)
            if last >= 0:
                if count_lines:
                    n = last + 1 - pos
                    same = n <= len(_NEWLINES) and buf.startswith(_NEWLINES[:n], pos)  # newlines only: no count needed
                    lines += n if same else buf.count(b"\n", pos, last + 1)
                self._pos = last + 1
                line_start = self.tell()
            if stop < len(buf):
                return lines, line_start
            if len(buf) - self._pos > _BLANK_TAIL:  # a line of nothing but spaces, without end
                self._pos = len(buf)
            if not self._more():
                self._pos = len(self._buf)
                return lines, line_start
