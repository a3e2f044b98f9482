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
import tempfile
import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from factory.stages.curate import Config, run
from factory.curate.readers import LOST_BYTES, SourceFile, WebSourceReader, list_sources
from factory.stage import NullTracker, StepContext

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
        docs, counts = read([path])
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
