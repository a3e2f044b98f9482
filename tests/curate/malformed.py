"""Malformed inputs that once crashed the curate stage, and the fixtures the reader tests build from them.

`tests/curate/regression/` holds the small ones as files, with what the reader must make of each in
`expected.json` (every crash or loss the fuzzing finds goes there too);
the gzip bomb is generated on the fly (`write_gzip_bomb`), streaming: about a megabyte on disk that expands
to a gigabyte, never held in memory or written out expanded.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

REGRESSION = Path(__file__).parent / "regression"
GIB = 1 << 30
PAGE = ("<html><head><title>Page {n}</title></head><body><article><p>Paragraph {n} of a page about rivers, "
        "boats and the towns that grew along their banks.</p></article></body></html>")


def warc_record(url: str, body: bytes, content_type: str = "text/html; charset=utf-8", gzip: bool = False) -> bytes:
    """One WARC response record (HTTP 200) as warcio writes it."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gzip)
    headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))
    return buf.getvalue()


def raw_warc_record(headers: list[tuple[str, str]], content: bytes) -> bytes:
    """A WARC record written by hand (any headers, or none that a writer would add), uncompressed."""
    lines = ["WARC/1.0"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content + b"\r\n\r\n"


def write_gzip_bomb(f, prefix: bytes, expanded_size: int = GIB, block: int = 1 << 20, fill: bytes = b"\x00") -> None:
    """Write one gzip member holding `prefix` then `fill` bytes (zeros, newlines) up to `expanded_size`, streaming.

    After a full flush deflate keeps no history, so `block` fill bytes compress to the same bytes every time:
    they are compressed once and written `expanded_size // block` times (CRC and size computed as we go).
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header: deflate, no name, no time
    f.write(deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH))
    zeros = (fill * block)[:block]
    packed = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc, size = zlib.crc32(prefix), len(prefix)
    while size + len(zeros) <= expanded_size:
        f.write(packed)
        crc, size = zlib.crc32(zeros, crc), size + len(zeros)
    f.write(deflate.flush() + struct.pack("<II", crc, size & 0xFFFFFFFF))


def newline_jsonl(path: Path, size_on_disk: int, fill: bytes = b"\n") -> None:
    """A .jsonl.gz of `size_on_disk` bytes: a line, gzip members of nothing but `fill` (newlines: about 1000 to one,
    so a megabyte on disk holds a gigabyte of empty lines), then a last line."""
    with open(path, "wb") as f:
        f.write(zlib.compress(b'{"text": "first"}\n', wbits=31))
        while f.tell() < size_on_disk:
            write_gzip_bomb(f, b"", 64 << 20, fill=fill)
        f.write(zlib.compress(b'{"text": "last"}\n', wbits=31))


def ratio_members(path: Path, members: int, expanded: int, fill: bytes = b"\r\n") -> None:
    """A .warc.gz: a page, `members` gzip members of `expanded` bytes of `fill` each (each far under a member cap in
    bytes, each at the extreme of deflate's ratio), another page."""
    with open(path, "wb") as f:
        f.write(warc_record("https://example.org/before", PAGE.format(n=1).encode(), gzip=True))
        for _ in range(members):
            write_gzip_bomb(f, b"", expanded, fill=fill)
        f.write(warc_record("https://example.org/after", PAGE.format(n=2).encode(), gzip=True))


def coded_warc_record(url: str, body: bytes, content_encoding: str = "", transfer_encoding: str = "") -> bytes:
    """A WARC response record whose HTTP body is sent with the given Content-Encoding / Transfer-Encoding (the body
    already coded by the caller)."""
    headers = [("Content-Type", "text/html; charset=utf-8")]
    headers += [("Content-Encoding", content_encoding)] if content_encoding else []
    headers += [("Transfer-Encoding", transfer_encoding)] if transfer_encoding else []
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
    return buf.getvalue()


def bomb_warc(path: Path, expanded_size: int = GIB) -> None:
    """A .warc.gz: a page, a record whose gzip member expands to `expanded_size` bytes, another page."""
    with open(path, "wb") as f:
        f.write(warc_record("https://example.org/before", PAGE.format(n=1).encode(), gzip=True))
        header = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: https://example.org/bomb\r\n"
                  f"Content-Type: application/http; msgtype=response\r\nContent-Length: {expanded_size}\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body>").encode()
        write_gzip_bomb(f, header, expanded_size)
        f.write(warc_record("https://example.org/after", PAGE.format(n=2).encode(), gzip=True))


def bomb_jsonl(path: Path, expanded_size: int = GIB) -> None:
    """A .jsonl.gz: one line, then a member expanding to `expanded_size` bytes of a line without end, then one more line."""
    with open(path, "wb") as f:
        f.write(zlib.compress(b'{"text": "first"}\n', wbits=31))
        write_gzip_bomb(f, b'{"text": "', expanded_size)
        f.write(zlib.compress(b'"}\n{"text": "never reached"}\n', wbits=31))
