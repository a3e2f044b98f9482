"""Property-based fuzzing of the curate reader (hypothesis): random and structure-aware-mutated WARC, WET,
HTML, JSONL, gzip members and file names. Every case runs the real reader on real files and checks that it
never raises and that every input record is either a document or counted under a skip reason.

Bounded for CI: `FACTORY_FUZZ_EXAMPLES` examples per test (default 40); a longer run, for example

    FACTORY_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q tests/curate/test_fuzz_readers.py

must report zero failures. A failure hypothesis finds is added to `tests/curate/regression/` as a file and
to the tests in `test_readers.py`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import tempfile
import time
import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from factory.curate.readers import LOST_BYTES, SourceFile, WebSourceReader, canonical_url, list_sources
from factory.stage import NullTracker, StepContext
from factory.stages.curate import Config, run

EXAMPLES = int(os.environ.get("FACTORY_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# text without "/" so no body spells a record's "WARC/1." line by chance
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), max_size=120)
ENCODINGS = st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252", "shift_jis"])
CHARSETS = st.sampled_from(["utf-8", "iso-8859-1", "utf-16", "x-no-such-charset", ""])
KINDS = st.sampled_from(["response", "response", "response", "conversion", "metadata"])
MUTATIONS = st.sampled_from(["none", "truncate", "flip", "drop_header", "dup_header", "lie_length", "bad_length_value"])


def read(paths: list[Path], **caps) -> tuple[list, dict[str, int]]:
    reader = WebSourceReader([SourceFile(os.fsencode(p.name).decode("utf-8", "backslashreplace"), p) for p in paths], **caps)
    docs = list(reader.run())  # never raises: that is the first property
    return docs, {k: int(v.total) for k, v in reader.stats.stats.items() if k != "doc_len"}


def outcomes(counts: dict[str, int]) -> int:
    """Units the reader accounted for: documents, skips of any reason, records that carry no page."""
    return sum(v for k, v in counts.items()
               if k == "documents" or k == "other_records" or (k.startswith("skipped_") and k != f"skipped_{LOST_BYTES}"))


@st.composite
def records(draw, wet: bool) -> list[dict]:
    n = draw(st.integers(1, 5))
    out = []
    for i in range(n):
        kind = "conversion" if wet else draw(KINDS)
        text = draw(TEXT)
        body = f"<html><body><p>{text}</p></body></html>" if kind == "response" else text
        out.append({"url": f"https://example.org/{i}", "kind": kind,
                    "body": body.encode(draw(ENCODINGS), errors="replace"), "charset": draw(CHARSETS)})
    return out


def warc_bytes(record: dict) -> bytes:
    """The record as warcio writes it, with a fixed id and date (hypothesis needs the same bytes every time)."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    fixed = {"WARC-Record-ID": f"<urn:uuid:00000000-0000-0000-0000-{record['url'][-1]:0>12}>",
             "WARC-Date": "2024-01-01T00:00:00Z"}
    if record["kind"] == "response":
        content_type = "text/html" + (f"; charset={record['charset']}" if record["charset"] else "")
        http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
        rec = writer.create_warc_record(record["url"], "response", payload=io.BytesIO(record["body"]), http_headers=http,
                                        warc_headers_dict=fixed)
    else:
        rec = writer.create_warc_record(record["url"], record["kind"], payload=io.BytesIO(record["body"]),
                                        warc_content_type="text/plain", warc_headers_dict=fixed)
    writer.write_record(rec)
    return buf.getvalue()


def mutate(data: bytes, mutation: str, draw) -> bytes:
    """One structure-aware mutation of one uncompressed WARC record."""
    header, sep, rest = data.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    if mutation == "flip":
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    if mutation == "drop_header":
        lines.pop(draw(st.integers(1, len(lines) - 1)))
    elif mutation == "dup_header":
        i = draw(st.integers(1, len(lines) - 1))
        lines.insert(i, lines[i])
    elif mutation in ("lie_length", "bad_length_value"):
        i = next(i for i, line in enumerate(lines) if line.startswith(b"Content-Length:"))
        length = int(lines[i].split(b":")[1])
        lie = draw(st.integers(-50, 50).filter(lambda d: d and length + d >= 0)) if mutation == "lie_length" else None
        value = str(length + lie).encode() if lie is not None else draw(st.sampled_from([b"-3", b"12x", b"", b"1e3"]))
        lines[i] = b"Content-Length: " + value
    return b"\r\n".join(lines) + sep + rest


@FUZZ
@given(st.data(), st.booleans(), st.booleans())
def test_mutated_warc_and_wet_records_lose_only_themselves(data, gz, wet):
    recs = data.draw(records(wet))
    raw = [warc_bytes(r) for r in recs]
    k = data.draw(st.integers(0, len(raw) - 1))
    mutation = data.draw(MUTATIONS)
    suffix = (".wet" if wet else ".warc") + (".gz" if gz else "")
    with tempfile.TemporaryDirectory() as tmp:
        clean, broken = Path(tmp) / f"clean{suffix}", Path(tmp) / f"broken{suffix}"
        pieces = [zlib.compress(r, wbits=31) if gz else r for r in raw]
        clean.write_bytes(b"".join(pieces))
        if mutation == "truncate":
            bad = pieces[k][: data.draw(st.integers(0, len(pieces[k]) - 1))]
            after = []
        else:
            bad = mutate(pieces[k], mutation, data.draw) if (mutation == "flip" or not gz) else \
                zlib.compress(mutate(raw[k], mutation, data.draw), wbits=31)
            after = pieces[k + 1:]
        broken.write_bytes(b"".join(pieces[:k] + [bad] + after))
        before_docs, before = read([clean])
        docs, counts = read([broken])
    want = {d.metadata["url"] for d in before_docs} - {recs[k]["url"]}
    if mutation == "truncate":
        want -= {r["url"] for r in recs[k + 1:]}
    got = {d.metadata["url"] for d in docs}
    # every other record is read as before; the mutated one may still be read too (its address possibly changed
    # by a flip or lost with a dropped header), but nothing else appears
    assert want <= got and len(docs) <= len(want) + 1, (mutation, want, got, counts)
    assert outcomes(before) == len(recs)  # clean input: one outcome per record, exactly
    present = k + 1 if mutation == "truncate" else len(recs)
    assert outcomes(counts) >= present - (mutation == "truncate" and not bad)  # each record output or counted


@FUZZ
@given(st.binary(max_size=3000), st.sampled_from([".warc", ".warc.gz", ".wet.gz", ".html", ".jsonl", ".jsonl.gz"]))
def test_random_bytes_in_any_format_are_counted(blob, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{suffix}"
        path.write_bytes(blob)
        _, counts = read([path])
    if blob:
        assert outcomes(counts) >= 1
    if suffix == ".jsonl":  # one outcome per non-blank line, exactly (a file with none counts once, as empty)
        assert outcomes(counts) == max(1, sum(1 for line in blob.split(b"\n") if line.strip()))


def _json_line(draw) -> bytes:
    value = draw(st.one_of(
        st.fixed_dictionaries({"text": TEXT}, optional={"id": st.one_of(st.none(), st.integers(), TEXT), "url": TEXT}),
        st.fixed_dictionaries({"html": TEXT.map(lambda t: f"<p>{t}</p>")}),
        st.recursive(st.none() | st.booleans() | st.integers() | TEXT, lambda c: st.lists(c) | st.dictionaries(TEXT, c),
                     max_leaves=8)))
    line = json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8")
    damage = draw(st.sampled_from(["none", "none", "cut", "flip", "latin1", "nest"]))
    if damage == "cut" and line:
        line = line[: draw(st.integers(0, len(line) - 1))]
    elif damage == "flip" and line:
        i = draw(st.integers(0, len(line) - 1))
        line = line[:i] + bytes([line[i] ^ draw(st.integers(1, 255))]) + line[i + 1:]
    elif damage == "latin1":
        line = json.dumps(value, ensure_ascii=False).encode("latin-1", errors="replace")
    elif damage == "nest":
        line = b"[" * draw(st.integers(1000, 50_000))
    return line


@FUZZ
@given(st.data(), st.booleans())
def test_damaged_jsonl_lines_are_each_output_or_counted(data, gz):
    lines = data.draw(st.lists(st.just(None), min_size=1, max_size=12))
    blob = b"\n".join(_json_line(data.draw) for _ in lines) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.jsonl.gz" if gz else "x.jsonl")
        path.write_bytes(gzip.compress(blob, mtime=0) if gz else blob)
        docs, counts = read([path])
    assert outcomes(counts) == max(1, sum(1 for line in blob.split(b"\n") if line.strip()))  # blank file: "empty"
    assert all(d.text.strip() for d in docs)


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from([None, "utf-8", "latin-1", "utf-16", "shift_jis", "x-bogus"]))
def test_html_in_any_bytes_or_declared_charset_is_one_outcome(body, declared):
    page = (f'<html><head><meta charset="{declared}"></head><body>'.encode() if declared else b"") + body
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.html"
        path.write_bytes(page)
        docs, counts = read([path])
    assert outcomes(counts) == 1 and len(docs) == counts.get("documents", 0) <= 1


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=60).filter(lambda b: b"/" not in b and b"\x00" not in b
                                                          and b not in (b".", b"..")), min_size=1, max_size=4, unique=True),
       st.sampled_from([".html", ".jsonl", ".warc"]))
def test_file_names_of_any_bytes_are_listed_and_read(names, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "crawl"
        root.mkdir()
        for name in names:
            (root / os.fsdecode(name + suffix.encode())).write_bytes(b'<html><body><p>hi</p></body></html>' if suffix == ".html"
                                                                     else b'{"text": "hi"}\n' if suffix == ".jsonl" else b"junk")
        files = list_sources([str(root)])
        assert len(files) == len(names)
        assert all(f.name.encode("utf-8") for f in files)  # valid UTF-8, no lone surrogates
        reader = WebSourceReader(files)
        docs = list(reader.run())
    counts = {k: int(v.total) for k, v in reader.stats.stats.items()}
    assert outcomes(counts) == len(names)
    assert all(json.dumps(d.metadata, ensure_ascii=False).encode("utf-8") for d in docs)


@settings(FUZZ, max_examples=max(1, EXAMPLES // 40))  # a whole stage run per example: a few seconds each
@given(st.data())
def test_the_stage_on_a_fuzzed_corpus_finishes_and_accounts_for_every_record(data):
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(data.draw(st.integers(2, 5))):
            recs = [warc_bytes(r) for r in data.draw(records(wet=False))]
            recs[0] = mutate(recs[0], data.draw(MUTATIONS.filter(lambda m: m != "truncate")), data.draw)
            (src / f"crawl-{i}.warc.gz").write_bytes(b"".join(zlib.compress(r, wbits=31) for r in recs))
            lines = data.draw(st.lists(st.just(None), min_size=1, max_size=6))
            (src / f"rows-{i}.jsonl").write_bytes(b"\n".join(_json_line(data.draw) for _ in lines))
            (src / f"page-{i}.html").write_bytes(data.draw(st.binary(max_size=500)))
        out = Path(tmp) / "out"
        out.mkdir()
        config = Config(sources=[str(src)], max_error_fraction=1.0, decontamination={"builtin_sets": False})
        metrics = run(config, {}, out, StepContext("curate", tracker=NullTracker(), scratch=Path(tmp) / "scratch"))
        stats = json.loads((out / "stats.json").read_text())
    assert stats["docs_in"] == stats["docs_out"] + sum(stats["removed"].values()) + sum(stats["skipped"].values())
    assert metrics["docs_in"] == stats["docs_in"] > 0


# Issue 25's classes, a generator each: encodings and byte-order marks, HTTP codings, compression ratios, read
# boundaries, regex-hostile attributes, lone surrogates. Each property says what a browser would show is read.

ASCII_WORDS = st.text(st.sampled_from("abcdefghij klmnop"), min_size=1, max_size=60)
# Latin-1 letters À-ÿ only: a lead byte never followed by a continuation byte, so no run of them is valid UTF-8 and a
# page that says UTF-8 but holds them has one reading
LATIN1_WORDS = st.text(st.sampled_from("abc déf ÀÉÎÕÜßàéîõüÿ"), min_size=1, max_size=60)
WIDE_WORDS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60).filter(str.strip)


@st.composite
def encoded_pages(draw) -> tuple[bytes, str, str | None]:
    """(page bytes, the text a browser shows, the HTTP header's charset or None)."""
    case = draw(st.sampled_from(["bom-utf8", "bom-utf16le", "bom-utf16be", "bom-utf32le", "bom-utf32be", "utf16-header",
                                 "latin1-says-utf8", "latin1-undeclared", "latin1-declared", "cp1251-declared"]))
    words = draw(LATIN1_WORDS if case.startswith("latin1") else WIDE_WORDS if case.startswith(("bom", "utf16"))
                 else st.text(st.sampled_from("абвгде жзий"), min_size=1, max_size=40))
    meta = {"latin1-says-utf8": '<meta charset="utf-8">', "latin1-declared": '<meta charset="iso-8859-1">',
            "cp1251-declared": '<meta charset="windows-1251">'}.get(case, "")
    page = f"<html><head>{meta}</head><body><p>{words}</p></body></html>"
    codec = {"bom-utf8": "utf-8", "bom-utf16le": "utf-16-le", "bom-utf16be": "utf-16-be", "bom-utf32le": "utf-32-le",
             "bom-utf32be": "utf-32-be", "utf16-header": "utf-16-le", "cp1251-declared": "cp1251"}.get(case, "latin-1")
    raw = (("\ufeff" if case.startswith("bom") else "") + page).encode(codec)
    return raw, page, "utf-16le" if case == "utf16-header" else None


@FUZZ
@given(encoded_pages(), st.sampled_from(["html", "warc", "warc.gz"]))
def test_pages_in_any_encoding_read_as_a_browser_shows_them(case, container):
    raw, page, header = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x.{container}"
        if container == "html":
            if header is not None:  # a file has no HTTP header: the case is for records
                return
            path.write_bytes(raw)
        else:
            record = warc_bytes({"url": "https://example.org/1", "kind": "response", "body": raw, "charset": header or ""})
            path.write_bytes(zlib.compress(record, wbits=31) if container.endswith(".gz") else record)
        docs, counts = read([path])
    assert [d.text for d in docs] == [page], counts


CODINGS = st.lists(st.sampled_from(["gzip", "x-gzip", "deflate", "deflate-raw", "br", "identity"]), max_size=3)


@FUZZ
@given(CODINGS, st.booleans(), st.integers(1, 300), ASCII_WORDS)
def test_responses_in_any_stack_of_http_codings_read_to_their_page(codings, chunked, chunk, words):
    import brotli

    from tests.curate.malformed import coded_warc_record

    html = f"<html><body><p>{words}</p></body></html>".encode()
    body = html
    for coding in codings:
        body = {"gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress,
                "deflate-raw": lambda b: zlib.compress(b)[2:-4], "br": brotli.compress, "identity": lambda b: b}[coding](body)
    transfer = "chunked" if chunked else ""
    if chunked:
        body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + chunk]), body[i:i + chunk])
                        for i in range(0, len(body), chunk)) + b"0\r\n\r\n"
    content = ", ".join(c.replace("deflate-raw", "deflate") for c in codings)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.warc"
        path.write_bytes(coded_warc_record("https://example.org/c", body, content, transfer))
        docs, counts = read([path])
    assert [d.text for d in docs] == [html.decode()], (codings, chunked, counts)


SMALL = {"max_page_bytes": 10_000, "max_header_bytes": 1024, "max_member_bytes": 20_000}  # one unit: 12 KB


@settings(FUZZ, max_examples=max(5, EXAMPLES // 4))  # megabytes per example
@given(st.lists(st.tuples(st.sampled_from([b"\n", b"\r\n", b" ", b"\x00", b"a", b"{}\n"]), st.integers(0, 4 << 20)),
                min_size=1, max_size=4),
       st.sampled_from(["warc.gz", "jsonl.gz"]))
def test_members_of_any_compression_ratio_end_in_seconds_and_keep_the_pages(fillers, fmt):
    from tests.curate.malformed import write_gzip_bomb

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x.{fmt}"
        with open(path, "wb") as f:
            for i, (fill, size) in enumerate(fillers):
                good = (warc_bytes({"url": f"https://example.org/{i}", "kind": "response", "charset": "",
                                    "body": b"<html><body><p>page</p></body></html>"}) if fmt == "warc.gz"
                        else b"\n" + json.dumps({"text": f"page {i}"}).encode() + b"\n")  # ends a filler's last line
                f.write(zlib.compress(good, wbits=31))
                write_gzip_bomb(f, b"", size, block=1 << 16, fill=fill)
        start = time.perf_counter()
        docs, counts = read([path], **SMALL)
        seconds = time.perf_counter() - start
    assert seconds < 10, (seconds, counts)
    capped = counts.get("skipped_too_large", 0) + counts.get("skipped_too_many_records", 0)
    want = len(fillers)
    # every page before a filler is read; a filler past a cap may take the pages after it, counted
    assert len(docs) == want or (capped and 1 <= len(docs) <= want), counts
    assert outcomes(counts) >= len(docs) + (1 if fill_counts(fillers) else 0)


def fill_counts(fillers) -> bool:
    """Whether some filler holds more than blank lines (a unit the reader must count); a filler is written in whole
    blocks of 64 KiB (`write_gzip_bomb`), none when smaller."""
    return any(size >= 1 << 16 and fill.strip() for fill, size in fillers)


NEAR_BOUNDARIES = st.sampled_from([1 << 16, 1 << 17, 1 << 20, 12_048, 20_000]).flatmap(lambda b: st.integers(b - 12, b + 12))


@FUZZ
@given(st.lists(st.one_of(st.just(0), NEAR_BOUNDARIES, st.integers(1, 200)), min_size=1, max_size=3),
       st.sampled_from(["warc", "warc-whole.gz", "warc-members.gz"]), st.booleans())
def test_a_record_start_at_any_read_boundary_is_found(junk_lengths, layout, newlines):
    # junk before each record puts its `WARC/1.` across read chunks, inflate pieces and held-member edges
    records = [warc_bytes({"url": f"https://example.org/{i}", "kind": "response", "charset": "",
                           "body": b"<html><body><p>page</p></body></html>"}) for i in range(len(junk_lengths) + 1)]
    pieces = [records[0]]
    for i, n in enumerate(junk_lengths):
        junk = (b"J" + bytes(random.Random(n).choices(b"xyz", k=n)))[:n]  # as compressible as text, no more
        if newlines and n > 2:
            junk = junk[: n // 2] + b"\n" + junk[n // 2 + 1:]
        pieces += [junk, records[i + 1]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.warc.gz" if layout.endswith(".gz") else "x.warc")
        if layout == "warc-whole.gz":
            path.write_bytes(gzip.compress(b"".join(pieces), mtime=0))
        elif layout == "warc-members.gz":
            path.write_bytes(b"".join(zlib.compress(p, wbits=31) for p in pieces))
        else:
            path.write_bytes(b"".join(pieces))
        docs, counts = read([path], **SMALL)
    assert [d.metadata["url"] for d in docs] == [f"https://example.org/{i}" for i in range(len(records))], counts
    assert counts.get("skipped_bad_warc_header", 0) == sum(1 for n in junk_lengths if n)


@FUZZ
@given(st.lists(st.one_of(NEAR_BOUNDARIES, st.integers(0, 100)), min_size=1, max_size=4), st.booleans())
def test_jsonl_lines_of_any_length_against_the_read_boundaries(lengths, gz):
    # as compressible as text, no more: a megabyte of one letter gzips 1000x, past max_expansion_ratio (a bomb's shape)
    lines = [json.dumps({"text": "t" + "".join(random.Random(n).choices("xyz", k=n))}).encode() for n in lengths]
    blob = b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.jsonl.gz" if gz else "x.jsonl")
        path.write_bytes(gzip.compress(blob, mtime=0) if gz else blob)
        docs, counts = read([path], max_page_bytes=1 << 21)
    assert [len(d.text) for d in docs] == [n + 1 for n in lengths], counts


HOSTILE_TOKENS = st.sampled_from(["<link", "<LINK ", " ", "rel", "REL", "=", "canonical", "href", '"', "'", "x", ">", "\n",
                                  "/", "<", "\t", "=canonical", " rel=canonical ", " href="])


@FUZZ
@given(st.lists(HOSTILE_TOKENS, min_size=1, max_size=40), st.booleans())
def test_the_canonical_address_costs_linear_time_on_regex_hostile_attributes(tokens, planted):
    pattern = "".join(tokens)
    hostile = pattern * (20_000 // len(pattern) + 1)
    first = '<link rel="canonical" href="https://example.org/c">' if planted else ""
    start = time.perf_counter()
    found = canonical_url(first + hostile)
    assert time.perf_counter() - start < 0.25
    if planted:
        assert found == "https://example.org/c"


# (as written in JSON, as it must read): a lone surrogate reads as U+FFFD, a pair as the character it encodes
# (a high one is followed by a letter, so two never make a pair)
LONE = st.one_of(st.integers(0xDC00, 0xDFFF).map(lambda c: (f"\\u{c:04x}", "\ufffd")),
                 st.integers(0xD800, 0xDBFF).map(lambda c: (f"\\u{c:04x}a", "\ufffda")))
SURROGATE_TEXT = st.lists(st.one_of(st.sampled_from([("a", "a"), ("é", "é"), (" ", " "), ("\\ud83d\\ude00", "😀")]), LONE),
                          min_size=1, max_size=12).map(lambda parts: ("".join(p[0] for p in parts), "".join(p[1] for p in parts)))


@FUZZ
@given(SURROGATE_TEXT, SURROGATE_TEXT, SURROGATE_TEXT)
def test_lone_surrogates_anywhere_in_a_record_are_written_as_valid_utf8(doc_id, url, text):
    from factory.documents import write_parts

    line = f'{{"id": "{doc_id[0]}", "url": "{url[0]}", "text": "x{text[0]}"}}\n'.encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.jsonl"
        path.write_bytes(line)
        docs, counts = read([path])
        assert counts == {"documents": 1}
        [doc] = docs
        assert (doc.id, doc.metadata["url"], doc.text) == (doc_id[1], url[1], "x" + text[1])
        write_parts([{"id": doc.id, "text": doc.text, "metadata": doc.metadata}], Path(tmp) / "out", 10)
        assert gzip.decompress((Path(tmp) / "out" / "part-00000.jsonl.gz").read_bytes()).decode("utf-8")
