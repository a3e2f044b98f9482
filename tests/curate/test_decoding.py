"""A response's bytes to text (`factory.curate.decoding`): byte-order marks, declared and undeclared charsets, HTTP
content codings (brotli included, bounded) and chunked transfer, as a browser decodes them."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from factory.curate.decoding import dechunk, decode_content, decode_html, windows_1252

PAGE = "<html><head><title>Café</title></head><body><p>Crème brûlée, naïve façade — “quoted”.</p></body></html>"


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_a_byte_order_mark_names_the_encoding(codec):
    # UTF-16/32 pages hold NUL bytes: without reading the mark first they were skipped as binary
    raw = PAGE.encode(codec)
    if codec.endswith(("-le", "-be")):  # the codec writes no mark of its own: add it
        raw = ("\ufeff" + PAGE).encode(codec)
    assert decode_html(raw) == (PAGE, None)


def test_utf16_without_a_mark_reads_from_the_http_header_only():
    raw = PAGE.encode("utf-16-le")
    assert decode_html(raw, "utf-16le") == (PAGE, None)
    assert decode_html(raw) == (None, "binary")


def test_a_page_that_says_utf8_but_holds_latin1_reads_as_a_browser_shows_it():
    raw = PAGE.replace("<head>", '<head><meta charset="utf-8">').replace(" — “quoted”", "").encode("latin-1")
    text, reason = decode_html(raw)
    assert reason is None and "Crème brûlée, naïve façade" in text
    text, _ = decode_html(raw, "utf-8")  # declared in the HTTP header instead
    assert "Crème brûlée, naïve façade" in text


def test_stray_latin1_bytes_in_a_utf8_page_keep_the_utf8_around_them():
    raw = PAGE.encode("utf-8") + b"<p>caf\xe9</p>"
    text, _ = decode_html(raw)
    assert text == PAGE + "<p>café</p>"


def test_windows_1252_maps_every_byte_as_browsers_do():
    assert windows_1252(b"\x80\x93\x94\xe9") == "€“”é"
    assert windows_1252(b"\x81\x8d\x8f\x90\x9d") == "\x81\x8d\x8f\x90\x9d"  # undefined in Python's cp1252
    assert len(windows_1252(bytes(range(256)))) == 256


def test_the_declared_charset_wins_over_a_guess():
    raw = PAGE.replace("<head>", '<head><meta charset="windows-1251">').replace("Café", "Кафе").encode("cp1251", "replace")
    text, _ = decode_html(raw)
    assert "Кафе" in text
    shift_jis = "<html><body><p>日本語のページ</p></body></html>".encode("shift_jis")
    assert decode_html(shift_jis, "shift_jis") == ("<html><body><p>日本語のページ</p></body></html>", None)


@pytest.mark.parametrize("label", ["utf-7", "punycode", "idna", "unicode_escape", "undefined", "x-no-such-charset"])
def test_labels_that_are_not_web_charsets_are_ignored(label):
    raw = PAGE.replace("<head>", f'<head><meta charset="{label}">').encode("latin-1", "replace")
    text, reason = decode_html(raw, label)
    assert reason is None and "Crème" in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_only_empty_and_binary_bytes_are_declined():
    assert decode_html(b"") == (None, "empty")
    assert decode_html(b" \r\n\t ") == (None, "empty")
    assert decode_html("  ".encode("utf-16")) == (None, "empty")
    assert decode_html(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR") == (None, "binary")
    assert decode_html(bytes(range(128, 256)) * 20)[1] is None  # high bytes: windows-1252, not "undecodable"


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "deflate-raw", "br", "gzip, br", "identity", "utf-8", ""])
def test_content_codings_are_undone(coding):
    body = PAGE.encode()
    for c in [c.strip() for c in coding.split(",")]:
        if c in ("gzip", "x-gzip"):
            body = gzip.compress(body)
        elif c == "deflate":
            body = zlib.compress(body)
        elif c == "deflate-raw":
            body = zlib.compress(body)[2:-4]
        elif c == "br":
            body = brotli.compress(body)
    header = coding.replace("deflate-raw", "deflate")
    assert decode_content(body, header, 1 << 20) == (PAGE.encode(), None)


def test_a_body_not_in_its_declared_coding_is_kept_as_it_is():
    assert decode_content(PAGE.encode(), "br", 1 << 20) == (PAGE.encode(), None)
    assert decode_content(PAGE.encode(), "gzip", 1 << 20) == (PAGE.encode(), None)


def test_a_cut_off_body_keeps_what_decoded():
    body = gzip.compress(PAGE.encode() * 50)
    out, problem = decode_content(body[: len(body) // 2], "gzip", 1 << 20)
    assert problem is None and 0 < len(out) < len(PAGE) * 50 and (PAGE.encode() * 50).startswith(out)


@pytest.mark.parametrize("coding", ["br", "gzip", "deflate"])
def test_a_coding_bomb_stops_at_the_limit(coding):
    big = b"<html>" + b"a" * (64 << 20)
    body = {"br": lambda b: brotli.compress(b, quality=1), "gzip": gzip.compress, "deflate": zlib.compress}[coding](big)
    assert len(body) < 1 << 20
    assert decode_content(body, coding, 5_000_000) == (b"", "too_large")


def test_chunked_transfer_is_dechunked():
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"<html>", b"<body>hello", b"</body></html>")) + b"0\r\n\r\n"
    assert dechunk(body) == b"<html><body>hello</body></html>"
    assert dechunk(b"6;ext=1\n<html>\n0\n\n") == b"<html>"  # extensions, bare line ends
    assert dechunk(b"<html>not chunked</html>") == b"<html>not chunked</html>"
    assert dechunk(b"6\r\n<html>\r\n40\r\n<body>cut") == b"<html><body>cut"
