"""The curate reader on malformed input: the crashes once found, resynchronisation, caps, odd file names.

Each case runs the real reader (`WebSourceReader.run`) on real files; warcio parses the records.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import time
import zlib
from pathlib import Path

import brotli
import pytest

from factory.curate.readers import SourceFile, WebSourceReader, canonical_url, list_sources
from tests.curate.malformed import (
    PAGE,
    REGRESSION,
    bomb_jsonl,
    bomb_warc,
    coded_warc_record,
    newline_jsonl,
    ratio_members,
    raw_warc_record,
    warc_record,
)


def read(paths: list[Path], **caps) -> tuple[list, dict[str, int], WebSourceReader]:
    """(documents, reader counters, reader) for `paths`, each named by its file name."""
    reader = WebSourceReader([SourceFile(os.fsencode(p.name).decode("utf-8", "backslashreplace"), p) for p in paths], **caps)
    docs = list(reader.run())
    return docs, {k: int(v.total) for k, v in reader.stats.stats.items() if k != "doc_len"}, reader


def pages(n: int, gz: bool) -> list[bytes]:
    return [warc_record(f"https://example.org/{i}", PAGE.format(n=i).encode(), gzip=gz) for i in range(n)]


@pytest.mark.parametrize("name", ["no-target-uri.warc", "no-target-uri.warc.gz"])
def test_response_without_target_uri_or_http_headers_is_skipped_and_named_for_its_exception(name, tmp_path):
    # the record that crashed the stage inside warcio (AttributeError: 'NoneType' ... 'startswith'), between two pages
    gz = name.endswith(".gz")
    before, after = pages(2, gz)
    path = tmp_path / name
    path.write_bytes(before + (REGRESSION / name).read_bytes() + after)
    docs, counts, reader = read([path])
    assert [d.metadata["url"] for d in docs] == ["https://example.org/0", "https://example.org/1"]
    assert counts == {"documents": 2, "skipped_error_AttributeError": 1}
    assert reader.samples["error_AttributeError"]["offset"] == len(before)
    assert "startswith" in reader.samples["error_AttributeError"]["detail"]


def test_gzip_bomb_in_a_warc_is_skipped_without_expanding_it(tmp_path):
    bomb_warc(tmp_path / "bomb.warc.gz")  # ~1 MB that expands to 1 GiB, written streaming
    size = (tmp_path / "bomb.warc.gz").stat().st_size
    assert size < 2_000_000
    docs, counts, _ = read([tmp_path / "bomb.warc.gz"], max_member_bytes=8 << 20)
    assert [d.metadata["url"] for d in docs] == ["https://example.org/before", "https://example.org/after"]
    assert counts["skipped_too_large"] == 1 and counts["documents"] == 2
    assert 0 < counts["skipped_lost_bytes"] < size  # the bomb's compressed bytes, passed over


def test_gzip_bomb_in_jsonl_loses_only_its_member(tmp_path):
    bomb_jsonl(tmp_path / "bomb.jsonl.gz")
    docs, counts, _ = read([tmp_path / "bomb.jsonl.gz"], max_member_bytes=8 << 20)
    # the bomb's member stops at the cap; the next member's lines are read, the first of them the end of the
    # bomb's line (`"}`), which is damage
    assert [d.text for d in docs] == ["first", "never reached"]
    assert counts == {"documents": 2, "skipped_too_large": 1, "skipped_invalid_json": 1,
                      "skipped_lost_bytes": counts["skipped_lost_bytes"]}


def test_a_corrupt_gzip_member_loses_only_its_record(tmp_path):
    members = pages(5, gz=True)
    broken = bytearray(members[2])
    broken[len(broken) // 2] ^= 0xFF  # inside the deflate stream
    (tmp_path / "x.warc.gz").write_bytes(b"".join(members[:2]) + bytes(broken) + b"".join(members[3:]))
    docs, counts, reader = read([tmp_path / "x.warc.gz"])
    assert [d.metadata["url"] for d in docs] == [f"https://example.org/{i}" for i in (0, 1, 3, 4)]
    assert counts["documents"] == 4 and counts["skipped_corrupt_gzip"] == 1
    assert reader.samples["corrupt_gzip"]["offset"] == len(members[0]) + len(members[1])
    assert counts["skipped_lost_bytes"] == len(broken)


def test_garbage_between_gzip_members_is_passed_over(tmp_path):
    members = pages(3, gz=True)
    garbage = bytes(range(256)) * 4
    (tmp_path / "x.warc.gz").write_bytes(members[0] + garbage + members[1] + members[2])
    docs, counts, _ = read([tmp_path / "x.warc.gz"])
    assert len(docs) == 3 and counts["skipped_corrupt_gzip"] == 1 and counts["skipped_lost_bytes"] == len(garbage)


@pytest.mark.parametrize("damage", ["no_version_line", "no_length", "length_too_long", "length_too_short",
                                    "header_too_large"])
def test_broken_warc_framing_loses_only_that_record(damage, tmp_path):
    records = pages(4, gz=False)
    rec = records[1]
    header, _, rest = rec.partition(b"\r\n\r\n")
    length = int(next(v for k, _, v in (h.partition(b": ") for h in header.split(b"\r\n")) if k == b"Content-Length"))
    if damage == "no_version_line":
        rec = rec.replace(b"WARC/1.", b"WORK/1.", 1)
    elif damage == "no_length":
        rec = rec.replace(b"Content-Length: ", b"Content-Lenght: ", 1)
    elif damage == "length_too_long":
        rec = rec.replace(f"Content-Length: {length}".encode(), f"Content-Length: {length + 300}".encode(), 1)
    elif damage == "length_too_short":
        rec = rec.replace(f"Content-Length: {length}".encode(), f"Content-Length: {length - 40}".encode(), 1)
    else:
        rec = rec.replace(b"\r\n", b"\r\nX-Padding: " + b"y" * 2000 + b"\r\n", 1)
    (tmp_path / "x.warc").write_bytes(records[0] + rec + records[2] + records[3])
    docs, counts, reader = read([tmp_path / "x.warc"], max_header_bytes=1024)
    reason = {"no_version_line": "bad_warc_header", "no_length": "bad_warc_header", "length_too_long": "bad_length",
              "length_too_short": "bad_length", "header_too_large": "header_too_large"}[damage]
    assert [d.metadata["url"] for d in docs] == [f"https://example.org/{i}" for i in (0, 2, 3)]
    assert counts[f"skipped_{reason}"] == 1 and counts["documents"] == 3
    assert reader.samples[reason]["offset"] == len(records[0])


def test_a_cut_off_warc_keeps_what_came_before(tmp_path):
    records = pages(3, gz=False)
    (tmp_path / "x.warc").write_bytes(records[0] + records[1] + records[2][: len(records[2]) // 2])
    docs, counts, _ = read([tmp_path / "x.warc"])
    assert len(docs) == 2 and counts["skipped_truncated"] == 1


def test_jsonl_lines_that_break_the_parser_are_counted_with_offsets(tmp_path):
    lines = [b'{"text": "one"}', b"[" * 100_000, b'{"text": "two", "url": 7}', b'{"text": "\xff"}', b'{"text": "three"}']
    (tmp_path / "x.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    docs, counts, reader = read([tmp_path / "x.jsonl"])
    assert [d.text for d in docs] == ["one", "two", "three"] and docs[1].metadata["url"] is None
    assert counts["skipped_invalid_json"] == 2  # deep nesting (RecursionError) and bad UTF-8
    assert reader.samples["invalid_json"]["offset"] == len(lines[0]) + 1


def test_file_names_of_any_bytes_are_listed_read_and_escaped(tmp_path):
    folder = tmp_path / "crawl"
    folder.mkdir()
    odd = os.fsdecode(b"caf\xe9-\xff.html")  # Latin-1 bytes: not UTF-8
    (folder / odd).write_bytes(PAGE.format(n=1).encode())
    (folder / "plain.html").write_bytes(PAGE.format(n=2).encode())
    files = list_sources([str(folder)])
    assert [f.name for f in files] == ["crawl/caf\\xe9-\\xff.html", "crawl/plain.html"]
    docs, counts, _ = read([f.path for f in files])
    assert counts == {"documents": 2}
    [doc] = list(WebSourceReader(files[:1]).run())
    assert doc.id == "crawl/caf\\xe9-\\xff.html" and json.dumps(doc.metadata, ensure_ascii=False).encode("utf-8")


def test_a_last_resort_guard_keeps_the_next_file(tmp_path, monkeypatch):
    # a parser bug the per-record guards do not expect (mocked: nothing real raises here today)
    (tmp_path / "a.warc").write_bytes(b"".join(pages(2, gz=False)))
    (tmp_path / "b.html").write_bytes(PAGE.format(n=9).encode())

    def broken(self, index, source):
        yield from ()
        raise MemoryError("parser blew up")

    monkeypatch.setattr(WebSourceReader, "_read_warc", broken)
    docs, counts, reader = read([tmp_path / "a.warc", tmp_path / "b.html"])
    assert [d.id for d in docs] == ["b.html"] and counts["skipped_error_MemoryError"] == 1
    assert reader.samples["error_MemoryError"]["file"] == "a.warc"


def test_gzip_members_hold_several_records_and_plain_gzip_of_a_whole_warc_reads(tmp_path):
    raw = b"".join(pages(3, gz=False))
    (tmp_path / "whole.warc.gz").write_bytes(gzip.compress(raw))  # one member, three records (gzip file.warc)
    docs, counts, _ = read([tmp_path / "whole.warc.gz"])
    assert len(docs) == 3 and counts == {"documents": 3}
    # a WET conversion record without WARC-Target-URI is text, kept
    wet = raw_warc_record([("WARC-Type", "conversion"), ("Content-Length", "11")], b"hello world")
    (tmp_path / "x.wet.gz").write_bytes(zlib.compress(wet, wbits=31))
    docs, counts, _ = read([tmp_path / "x.wet.gz"])
    assert [d.text for d in docs] == ["hello world"] and docs[0].metadata["format"] == "text"


@pytest.mark.parametrize("name", sorted(json.loads((REGRESSION / "expected.json").read_text())))
def test_regression_corpus(name):
    # every input that once crashed or misled the reader (the crashes, then what fuzzing found)
    expected = json.loads((REGRESSION / "expected.json").read_text())[name]
    docs, counts, _ = read([REGRESSION / name])
    assert [d.metadata["url"] for d in docs] == expected["urls"]
    assert {k.removeprefix("skipped_"): v for k, v in counts.items()
            if k.startswith("skipped_") and k != "skipped_lost_bytes"} == expected["skipped"]


# Issue 25's classes: each test failed before its fix (a crash, a hang, or a good page lost).


def test_lone_surrogates_in_jsonl_fields_become_replacement_characters(tmp_path):
    # JSON `\ud800` escapes decode to lone surrogates, which UTF-8 cannot hold: the corpus writer crashed on them
    (tmp_path / "x.jsonl").write_bytes(
        b'{"id": "a\\ud800", "url": "https://example.org/\\udfff", "text": "one \\ud83d two"}\n'
        b'{"text": "ok \\ud83d\\ude00", "metadata": {"url": "https://example.org/\\udc80"}}\n')
    docs, _, _ = read([tmp_path / "x.jsonl"])
    assert [(d.id, d.metadata["url"], d.text) for d in docs] == [
        ("a\ufffd", "https://example.org/\ufffd", "one \ufffd two"), ("x.jsonl#1", "https://example.org/\ufffd", "ok 😀")]
    assert all(json.dumps([d.id, d.text, d.metadata], ensure_ascii=False).encode("utf-8") for d in docs)


def _deep_folder(root: Path, depth: int = 20) -> None:
    """Folders nested past the system's path length limit (each name 244 bytes), a page at the bottom."""
    fds = [os.open(root, os.O_RDONLY)]
    try:
        for i in range(depth):
            name = f"d{i:03d}" + "x" * 240
            os.mkdir(name, dir_fd=fds[-1])
            fds.append(os.open(name, os.O_RDONLY, dir_fd=fds[-1]))
        page = os.open("page.html", os.O_WRONLY | os.O_CREAT, dir_fd=fds[-1])
        os.write(page, PAGE.format(n=9).encode())
        os.close(page)
    finally:
        for fd in fds:
            os.close(fd)


def test_links_that_lead_nowhere_and_folders_past_the_path_limit_are_listed_and_counted(tmp_path):
    # the listing raised OSError (too many levels of symbolic links; file name too long)
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    (crawl / "a.html").write_bytes(PAGE.format(n=1).encode())
    (crawl / "loop.html").symlink_to("loop.html")
    (crawl / "x.warc").symlink_to("y.warc")
    (crawl / "y.warc").symlink_to("x.warc")
    (crawl / "gone.jsonl").symlink_to("missing.jsonl")
    (crawl / "sub").mkdir()
    (crawl / "sub" / "up").symlink_to("..")  # a folder loop: links to folders are not followed
    (crawl / "sub" / "b.html").write_bytes(PAGE.format(n=2).encode())
    (crawl / "pipe.html").mkdir()  # a folder with a page's name is not an input
    _deep_folder(crawl)
    files = list_sources([str(crawl)])
    names = [f.name for f in files]
    assert names[0] == "crawl/a.html" and names[1].startswith("crawl/d000")  # d000...: the folder past the limit
    assert names[2:] == ["crawl/gone.jsonl", "crawl/loop.html", "crawl/sub/b.html", "crawl/x.warc", "crawl/y.warc"]
    reader = WebSourceReader(files)
    docs = list(reader.run())
    assert [d.id for d in docs] == ["crawl/a.html", "crawl/sub/b.html"]
    assert reader.stats["skipped_unreadable"].total == 5 and reader.samples["unreadable"]["file"].startswith("crawl/d000")


@pytest.mark.parametrize("size", [1_000_000, 10_000_000])
def test_gzipped_jsonl_of_empty_lines_ends_in_seconds(size, tmp_path):
    # a megabyte on disk is a gigabyte of newlines: a Python step per line took 15 minutes (10 MB: hours)
    newline_jsonl(tmp_path / "x.jsonl.gz", size)
    start = time.perf_counter()
    docs, counts, _ = read([tmp_path / "x.jsonl.gz"])
    assert time.perf_counter() - start < 5
    assert [d.text for d in docs] == ["first", "last"]
    assert counts["skipped_too_large"] >= 1  # each member past the expansion ratio, counted


def test_gzipped_jsonl_of_millions_of_tiny_lines_stops_at_the_record_cap(tmp_path):
    rng = random.Random(0)
    lines = b"".join(b"%d\n" % rng.randrange(100) for _ in range(1_500_000))  # a number a line: not a record
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(lines, mtime=0))
    start = time.perf_counter()
    _, counts, _ = read([path])
    assert time.perf_counter() - start < 5
    assert counts["skipped_too_many_records"] == 1  # the rest of the file, counted once
    allowed = max(100_000, 256 * path.stat().st_size // 1024)
    assert counts["skipped_invalid_json"] == allowed < 1_500_000


def test_gzip_members_at_an_extreme_ratio_under_the_member_cap_end_in_seconds(tmp_path):
    # two members of 60 MiB of blank lines each, 120 KB on disk: stepped through a line at a time, 27 s per 120 KB
    ratio_members(tmp_path / "x.warc.gz", members=2, expanded=60 << 20)
    assert (tmp_path / "x.warc.gz").stat().st_size < 200_000
    start = time.perf_counter()
    docs, counts, _ = read([tmp_path / "x.warc.gz"])
    assert time.perf_counter() - start < 5
    assert [d.metadata["url"] for d in docs] == ["https://example.org/before", "https://example.org/after"]
    assert counts["skipped_too_large"] == 2  # each member stopped at the expansion ratio, counted


SMALL = {"max_page_bytes": 10_000, "max_header_bytes": 1024, "max_member_bytes": 20_000}  # hold at most 20 KB


def test_a_warc_gzipped_as_one_member_is_read_record_by_record(tmp_path):
    # `gzip x.warc`: one member past max_member_bytes was dropped whole as one too_large (300 records lost)
    raw = b"".join(pages(300, gz=False))
    (tmp_path / "whole.warc.gz").write_bytes(gzip.compress(raw, mtime=0))
    docs, counts, _ = read([tmp_path / "whole.warc.gz"], **SMALL)
    assert [d.metadata["url"] for d in docs] == [f"https://example.org/{i}" for i in range(300)]
    assert counts == {"documents": 300}
    # cut off in the middle: the records before the cut are read, the one cut is counted
    packed = gzip.compress(raw, mtime=0)
    (tmp_path / "cut.warc.gz").write_bytes(packed[: len(packed) // 2])
    docs, counts, _ = read([tmp_path / "cut.warc.gz"], **SMALL)
    assert 100 < len(docs) < 300 and counts["skipped_truncated"] == 1
    assert [d.metadata["url"] for d in docs] == [f"https://example.org/{i}" for i in range(len(docs))]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_utf16_and_utf32_pages_with_a_byte_order_mark_are_read(codec, tmp_path):
    page = PAGE.format(n=1).replace("Paragraph", "Café naïve paragraph")
    (tmp_path / "x.html").write_bytes(("\ufeff" + page).encode(codec) if codec.endswith("be") else page.encode(codec))
    line = json.dumps({"text": "Café"}, ensure_ascii=False) + "\n"
    (tmp_path / "x.jsonl").write_bytes(("\ufeff" + line).encode(codec) if codec.endswith("be") else line.encode(codec))
    docs, counts, _ = read([tmp_path / "x.html", tmp_path / "x.jsonl"])  # were skipped as binary, invalid JSON
    assert [d.text for d in docs] == [page, "Café"] and counts == {"documents": 2}


@pytest.mark.parametrize("gz", [False, True])
def test_a_record_start_that_straddles_a_read_chunk_is_found(gz, tmp_path):
    # junk before a record, its `WARC/1.` placed across the 64 KiB boundary the resynchronisation read in
    records = pages(3, gz=False)
    for k in range(1, 8):
        junk = b"J" + b"x" * (65536 - k)
        body = records[0] + junk + records[1] + records[2]
        path = tmp_path / f"x{k}.warc" if not gz else tmp_path / f"x{k}.warc.gz"
        path.write_bytes(gzip.compress(body, mtime=0) if gz else body)
        docs, counts, _ = read([path])
        assert [d.metadata["url"] for d in docs] == [f"https://example.org/{i}" for i in range(3)], k
        assert counts["skipped_bad_warc_header"] == 1


@pytest.mark.parametrize(("content", "transfer"), [("br", ""), ("gzip", ""), ("deflate", ""), ("br", "chunked"),
                                                   ("", "chunked"), ("gzip, br", "")])
def test_http_content_and_transfer_codings_are_undone(content, transfer, tmp_path):
    # every `Content-Encoding: br` response failed with AttributeError (warcio and the installed brotli)
    html = PAGE.format(n=3).encode()
    body = html
    for coding in [c.strip() for c in content.split(",") if c.strip()]:
        body = {"br": brotli.compress, "gzip": gzip.compress, "deflate": zlib.compress}[coding](body)
    if transfer == "chunked":
        body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50]), body[i:i + 50]) for i in range(0, len(body), 50)) + b"0\r\n\r\n"
    (tmp_path / "x.warc").write_bytes(coded_warc_record("https://example.org/c", body, content, transfer))
    docs, counts, _ = read([tmp_path / "x.warc"])
    assert [d.text for d in docs] == [html.decode()] and counts == {"documents": 1}


def test_a_brotli_bomb_in_a_response_is_stopped_at_the_page_cap(tmp_path):
    body = brotli.compress(b"<html>" + b"a" * (64 << 20), quality=1)
    (tmp_path / "x.warc").write_bytes(coded_warc_record("https://example.org/b", body, "br") + pages(1, gz=False)[0])
    docs, counts, _ = read([tmp_path / "x.warc"])
    assert [d.metadata["url"] for d in docs] == ["https://example.org/0"] and counts["skipped_too_large"] == 1


@pytest.mark.parametrize("gz", [False, True])
def test_a_jsonl_line_over_the_member_cap_loses_only_itself(gz, tmp_path):
    # the line was passed over up to max_member_bytes, and the rest of the file went with it
    blob = b'{"text": "one"}\n{"text": "' + random.Random(0).randbytes(100_000).hex().encode() + b'"}\n{"text": "two"}\n'
    path = tmp_path / ("x.jsonl.gz" if gz else "x.jsonl")
    path.write_bytes(gzip.compress(blob, mtime=0) if gz else blob)
    docs, counts, _ = read([path], **SMALL)
    assert [d.text for d in docs] == ["one", "two"] and counts == {"documents": 2, "skipped_too_large": 1}


def test_a_page_that_says_utf8_but_holds_latin1_is_read_as_a_browser_shows_it(tmp_path):
    page = PAGE.format(n=1).replace("<head>", '<head><meta charset="utf-8">').replace("Paragraph", "Café naïve")
    (tmp_path / "x.html").write_bytes(page.encode("latin-1"))  # was dropped as undecodable
    (tmp_path / "x.warc").write_bytes(warc_record("https://example.org/l", page.encode("latin-1")))
    docs, counts, _ = read([tmp_path / "x.html", tmp_path / "x.warc"])
    assert [d.text for d in docs] == [page, page] and counts == {"documents": 2}


@pytest.mark.parametrize("pattern", ["<link rel=canonical href=", '<link href="a" rel=x ', "<link rel=canonical "])
def test_the_canonical_address_is_found_in_linear_time(pattern):
    # 20 KB crafted against the old pattern took 45-90 s (cubic backtracking)
    hostile = pattern * (20_000 // len(pattern))
    start = time.perf_counter()
    assert canonical_url(hostile) is None
    assert canonical_url(hostile + '<link rel="canonical" href="https://example.org/c">') is None  # past 20,000
    assert canonical_url('<link rel="canonical" href="https://example.org/c">' + hostile) == "https://example.org/c"
    assert time.perf_counter() - start < 0.5
    assert canonical_url("<LINK HREF='https://a/b' REL='alternate Canonical'>") == "https://a/b"
    assert canonical_url('<link rel="canonical-ish" href="x"><link rel=stylesheet href=y>') is None
