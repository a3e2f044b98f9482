"""The readers' byte streams (`factory.curate.streams`): a window over chunks searched at C speed whatever the chunk
edges, and gzip members inflated under the caps, held until checked, with a break where one fails."""

from __future__ import annotations

import io
import random
import zlib

import pytest

from factory.curate.streams import ByteStream, FileBudget, GzipChunks, ReadCaps

DATA = b"head\n\n \r\n\t\nWARC/1.0\r\nline two\nend"


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_finds_lines_and_record_starts_across_any_chunk_edge(size):
    stream = ByteStream(chunked(DATA, size))
    assert stream.readline(100) == b"head\n"
    assert stream.skip_blank() == (3, 11)  # three blank lines passed; the next line starts at byte 11
    assert stream.tell() == 11 and stream.skip_to(b"WARC/1.") and stream.tell() == 11
    stream.mark(stream.tell())
    assert stream.readline(4) == b"WARC"  # a line cut at the limit
    assert stream.readline(100) == b"/1.0\r\n"
    assert stream.seek(11) and stream.read(8) == b"WARC/1.0"  # back within what the mark keeps
    assert stream.skip_to(b"two") and stream.read(3) == b"two"
    assert not stream.skip_to(b"WARC/1.") and stream.eof and stream.read(5) == b""


def test_a_break_stops_reads_until_resumed():
    stream = ByteStream([b"one\ntw", None, b"three\n"])
    assert stream.readline(100) == b"one\n"
    assert stream.readline(100) == b"tw" and stream.at_break  # the line the break cut
    assert stream.readline(100) == b""
    stream.resume()
    assert stream.readline(100) == b"three\n" and not stream.at_break


def test_skip_blank_holds_nothing_of_a_gigabyte_of_newlines():
    stream = ByteStream(iter([b"\n" * (1 << 20)] * 1024 + [b"x\n"]))
    assert stream.skip_blank() == (1 << 30, 1 << 30)
    assert stream.readline(10) == b"x\n"


def _members(*blobs: bytes) -> bytes:
    return b"".join(zlib.compress(b, wbits=31) for b in blobs)


def _inflate(data: bytes, caps: ReadCaps) -> tuple[list, list, GzipChunks]:
    reports: list = []
    chunks = GzipChunks(io.BytesIO(data), len(data), caps, FileBudget(caps, len(data), gz=True),
                        lambda reason, offset, detail: reports.append((reason, offset)))
    return list(chunks), reports, chunks


CAPS = ReadCaps(max_page_bytes=1000, max_header_bytes=1024, max_member_bytes=4000)  # one unit: 3048 bytes


def test_members_join_and_a_corrupt_one_is_a_break_counted_once():
    good, bad = zlib.compress(b"b" * 100, wbits=31), bytearray(zlib.compress(b"c" * 2000, wbits=31))
    bad[-6] ^= 0xFF  # the CRC: found only at the member's end, so nothing of it was handed out
    first = zlib.compress(b"a" * 10, wbits=31)
    out, reports, chunks = _inflate(first + bytes(bad) + good, CAPS)
    assert out == [b"a" * 10, None, b"b" * 100]
    assert reports == [("corrupt_gzip", len(first))] and chunks.lost == len(bad)
    assert chunks.member_offset(5) == 0 and chunks.member_offset(10) == len(first) + len(bad)


def test_a_member_over_max_member_bytes_is_streamed_and_a_cut_one_keeps_what_inflated():
    big = random.Random(0).randbytes(3 << 20)  # past the 4000 bytes held: handed out as it inflates
    out, reports, _ = _inflate(_members(big), CAPS)
    assert b"".join(out) == big and len(out) > 1 and reports == []
    cut = _members(b"x" * 500)[:-8]  # the CRC and size lost
    out, reports, _ = _inflate(cut, CAPS)
    assert out == [b"x" * 500, None] and reports == [("truncated", 0)]


def test_a_bomb_member_stops_at_the_ratio_and_the_next_member_is_read():
    data = _members(b"page one") + _members(b"\n" * (50 << 20)) + _members(b"page two")
    out, reports, _ = _inflate(data, CAPS)
    assert out == [b"page one", None, b"page two"] and reports == [("too_large", 28)]


def test_the_file_budget_bounds_expansion_and_records():
    caps = ReadCaps(max_page_bytes=1000, max_header_bytes=1024, max_file_bytes=10_000, max_records_per_kib=3)
    budget = FileBudget(caps, 100_000, gz=True)
    assert budget.bytes_left == 10_000 and budget.records_left == 100_000  # the floor: a small file's records
    assert budget.spend_bytes(10_000) and not budget.spend_bytes(1) and budget.exhausted == "too_large"
    budget = FileBudget(caps, 200 << 20, gz=False)
    assert budget.records_left == 3 * (200 << 10)
    budget.records_left = 1
    assert budget.room()
    budget.spend_record()
    assert not budget.room() and budget.exhausted == "too_many_records"
