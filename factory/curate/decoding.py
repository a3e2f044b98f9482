"""A web response's bytes to text, as browsers decode them: HTTP transfer coding, content coding, then charset.

    body = dechunk(raw)                                       # Transfer-Encoding: chunked
    body, problem = decode_content(body, "gzip, br", limit)   # Content-Encoding: at most `limit` bytes out
    text, reason = decode_html(body, declared_charset)        # BOM, UTF-8, the declared charset, windows-1252

Content codings are gzip (x-gzip), deflate (zlib-wrapped or raw), br and identity, decoded here with a bound on
what comes out (a brotli member can expand a million times): warcio's own decoding calls a brotli API that the
installed brotli no longer has, and bounds nothing. A body that does not decode as its header says is taken as it
is (servers and crawlers often decode a body and keep the header), as warcio does; one cut off keeps what decoded.

Charsets, in order: a byte-order mark (UTF-8, UTF-16 or UTF-32, which otherwise read as binary); a UTF-16/32
charset from the HTTP header; strict UTF-8; the declared charset (HTTP header, else `<meta charset>`), with
invalid sequences replaced as a browser does; else UTF-8 with each invalid byte read as windows-1252 (what
browsers read a Latin-1 page as, and what a page that says UTF-8 but holds Latin-1 needs). A page is never
dropped as undecodable; only empty and binary bytes are declined.
"""

from __future__ import annotations

import codecs
import re
import zlib

import brotli

_NUL = b"\x00"
_CONTROL_BYTES = bytes([*range(9), *range(14, 32)])  # control characters other than tab, newlines, form feed
# `[^>]{0,512}`, not `[^>]+`: a run of `<meta` openings without `>` costs a bounded scan each, not the rest of the head
_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE)
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")  # a chunk size
_HTTP_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE)
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),  # before UTF-16: FF FE 00 00
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_WIDE = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
# text codecs Python has that no web page uses, some of them slow (punycode is quadratic) or yielding lone surrogates
_NOT_WEB = {"punycode", "idna", "utf-7", "unicode-escape", "raw-unicode-escape", "undefined", "charmap"}
# labels the WHATWG encoding standard reads as windows-1252
_WINDOWS_1252_LABELS = {"ascii", "iso8859-1", "cp1252"}
# windows-1252 as browsers decode it: Python's cp1252 leaves five bytes undefined, browsers map them to U+0081 ...
_WINDOWS_1252 = "".join(chr(b) if 0x80 <= b < 0xA0 and bytes([b]).decode("cp1252", "replace") == "\ufffd"
                        else bytes([b]).decode("cp1252") for b in range(256))
# past this many invalid UTF-8 sequences a page is a legacy-encoded one, decoded whole as windows-1252 (C speed)
# rather than byte by byte in the error handler
_MAX_STRAY_BYTES = 1000
_OUT_CHUNK = 1 << 20


def _windows_1252_errors(error: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(_WINDOWS_1252[b] for b in error.object[error.start:error.end]), error.end


codecs.register_error("factory-windows-1252", _windows_1252_errors)


def windows_1252(raw: bytes) -> str:
    """`raw` as browsers decode windows-1252 (and the ISO-8859-1 and ASCII labels): every byte a character."""
    return codecs.charmap_decode(raw, "strict", _WINDOWS_1252)[0]


def is_binary(raw: bytes) -> bool:
    """NUL bytes or many control characters in the first 4 KiB: an image, archive or other binary file."""
    head = raw[:4096]
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))  # counted in C, not per byte in Python
    return _NUL in head or controls > len(head) // 20


def http_charset(content_type: str) -> str | None:
    """The `charset=` parameter of a Content-Type header, if any."""
    match = _HTTP_CHARSET.search(content_type[:1024])
    return match.group(1) if match else None


def _web_codec(label: str | None) -> str | None:
    """Python's codec name for a charset label a page may declare, or None (unknown, or not a web charset)."""
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return None if name in _NOT_WEB else name


def decode_html(raw: bytes, declared_charset: str | None = None) -> tuple[str | None, str | None]:
    """Bytes of a page -> (text, None), or (None, "empty" | "binary"); `declared_charset` is the HTTP header's."""
    if not raw or raw.isspace():
        return None, "empty"
    for bom, codec in BOMS:
        if raw.startswith(bom):
            text = raw[len(bom):].decode(codec, "replace")
            return (None, "empty") if not text or text.isspace() else (text, None)
    declared = _web_codec(declared_charset)
    if declared in _WIDE:  # UTF-16/32 without a BOM is only known from the HTTP header (NUL bytes: not binary)
        try:
            text = raw.decode(declared)
            return (None, "empty") if text.isspace() else (text, None)
        except UnicodeDecodeError:
            pass
    if is_binary(raw):
        return None, "binary"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    if declared is None:
        match = _META_CHARSET.search(raw[:4096])
        declared = _web_codec(match.group(1).decode("ascii")) if match else None
    if declared in _WINDOWS_1252_LABELS:
        return windows_1252(raw), None
    if declared is not None and declared != "utf-8" and declared not in _WIDE:
        return raw.decode(declared, "replace"), None  # the declared charset wins, as in a browser
    # UTF-8 (declared or not) that does not decode: stray Latin-1 bytes each read as windows-1252, or the whole page
    # when there are many (a Latin-1 page that says UTF-8)
    if raw.decode("utf-8", "replace").count("\ufffd") > _MAX_STRAY_BYTES:
        return windows_1252(raw), None
    return raw.decode("utf-8", "factory-windows-1252"), None


def dechunk(raw: bytes) -> bytes:
    """The body of an HTTP `Transfer-Encoding: chunked` message; bytes that are not chunked come back as they are,
    a body cut off keeps its whole chunks and the part of the last one that is there."""
    out, pos = [], 0
    while True:
        end = raw.find(b"\n", pos, pos + 1024)
        size = raw[pos:end].split(b";", 1)[0].strip() if end >= 0 else b""
        if not _HEX.fullmatch(size):
            return raw if pos == 0 else b"".join(out)  # not chunked after all, or the chunks end here
        n = int(size, 16)
        if n == 0:
            return b"".join(out)
        out.append(raw[end + 1:end + 1 + n])
        pos = end + 1 + n
        pos += 2 if raw.startswith(b"\r\n", pos) else 1 if raw.startswith(b"\n", pos) else 0


def _inflater(coding: str):
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return zlib.decompressobj()
    if coding == "deflate-raw":
        return zlib.decompressobj(-zlib.MAX_WBITS)
    return brotli.Decompressor()


def _decode_one(body: bytes, coding: str, limit: int) -> tuple[bytes | None, bool]:
    """(bytes out, or None where the body is not in `coding` at all; whether more than `limit` came out)."""
    inflater, out, size = _inflater(coding), [], 0
    try:
        if coding == "br":
            data = body
            while True:
                # bounded output: the decoder keeps the rest and gives more on the next call
                piece = inflater.process(data, output_buffer_limit=_OUT_CHUNK)
                data = b""
                out.append(piece)
                size += len(piece)
                if size > limit:
                    return b"".join(out), True
                if inflater.is_finished() or (not piece and inflater.can_accept_more_data()):
                    break
        else:
            data = body
            while data:
                piece = inflater.decompress(data, min(_OUT_CHUNK, limit + 1 - size))
                out.append(piece)
                size += len(piece)
                if size > limit:
                    return b"".join(out), True
                data = inflater.unconsumed_tail
                if inflater.eof:
                    break
    except (zlib.error, brotli.error):
        if not size:
            return None, False  # the body was never in this coding
    return b"".join(out), False  # whole, or cut off: what decoded is kept, as a browser shows a partial page


def decode_content(body: bytes, content_encoding: str, limit: int) -> tuple[bytes, str | None]:
    """`body` with its HTTP content codings undone (listed in the order applied, so undone last first), at most
    `limit` bytes of it: (bytes, None), or (b"", "too_large") when the decoded body passes `limit`. A coding the
    body is not in, and one not known here (a server's "utf-8", "none"), leave the bytes as they are."""
    for coding in reversed([c.strip().lower() for c in content_encoding.split(",")][:4]):
        if coding not in ("gzip", "x-gzip", "deflate", "br"):
            continue
        decoded, over = _decode_one(body, coding, limit)
        if decoded is None and coding == "deflate":  # raw deflate without the zlib wrapper, as some servers send
            decoded, over = _decode_one(body, "deflate-raw", limit)
        if over:
            return b"", "too_large"
        if decoded is not None:
            body = decoded
    return body, None
