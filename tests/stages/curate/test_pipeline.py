"""The curate stage on a slice of the shipped smoke corpus, plus malformed inputs, run for real."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from factory.stages.curate import Config, run
from factory.curate.dedup.planted import jaccard_pairs
from factory.curate.filters import normalised_text_hash
from factory.curate.quality.reference_text import stdlib_docstrings
from factory.errors import InputError
from factory.stage import NullTracker, StepContext
from tests.spine import corpus_records

SMOKE = Path(__file__).resolve().parents[3] / "examples" / "data" / "smoke-html"
PLANTED = json.loads((SMOKE / "planted.json").read_text())


def _prose_text() -> str:
    """Plain English text for the JSONL input (no HTML: it skips extraction) that the Gopher rules keep."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

    rules = (GopherQualityFilter(), GopherRepetitionFilter())
    return next(t for t in stdlib_docstrings(n_docs=50, min_words=150)
                if all(rule.filter(Document(text=t, id="x")) is True for rule in rules))


PROSE_TEXT = _prose_text()


def _subset(dest: Path) -> dict[str, dict]:
    """Copy a slice of the corpus (every planted kind, the originals of its duplicates, the WARC) to `dest`."""
    files = PLANTED["files"]
    by_url = {v["url"]: k for k, v in files.items() if v["kind"] == "prose"}
    chosen: list[str] = []
    for kind, n in (("exact_duplicate", 4), ("same_body_other_site", 2), ("near_duplicate", 12)):
        for name in sorted(k for k, v in files.items() if v["kind"] == kind)[:n]:
            chosen += [name, by_url[files[name]["of_url"]]]
    chosen += sorted(k for k, v in files.items() if v["kind"] == "prose")[:20]
    chosen += sorted(k for k, v in files.items() if v["kind"] in ("non_english", "junk"))
    dest.mkdir(parents=True)
    for name in sorted(set(chosen)):
        shutil.copy(SMOKE / name, dest / name)
    shutil.copy(SMOKE / "crawl.warc.gz", dest / "crawl.warc.gz")
    return {name: files[name] for name in set(chosen)}


BIG = 50 * 1024 * 1024  # a 50 MB page: over max_page_bytes, never read whole


def _warc(path: Path, records: list[tuple[str, str, bytes]]) -> None:
    """An uncompressed WARC of HTTP responses: (url, content type, body) each."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=False)
        for url, content_type, body in records:
            headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))


def _broken(dest: Path) -> None:
    """Malformed inputs: each must be skipped and counted, never crash the stage."""
    dest.mkdir(parents=True)
    (dest / "empty.html").write_bytes(b"")
    (dest / "empty.warc.gz").write_bytes(b"")
    (dest / "empty.jsonl").write_bytes(b"")
    with open(dest / "huge.html", "wb") as f:  # 50 MB of one repeated paragraph
        f.write(b"<html><body>")
        chunk = b"<p>All work and no play makes a dull page.</p>\n" * 20_000
        while f.tell() < BIG:
            f.write(chunk)
        f.write(b"</body></html>")
    # WARC: a binary body served as text/html, a page declared UTF-8 but sent as Latin-1, and a 50 MB body
    _warc(dest / "odd.warc", [
        ("https://example.org/logo", "text/html", b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)) * 8),
        ("https://example.org/cafe", "text/html; charset=utf-8", "<html><body><p>Café naïve</p></body></html>".encode("latin-1")),
        ("https://example.org/huge", "text/html", b"<html><body>" + b"<p>x</p>" * (BIG // 8) + b"</body></html>"),
    ])
    lines = [b'{"text": ' + json.dumps(PROSE_TEXT).encode() + b', "id": "jsonl-prose", "url": "https://example.org/j"}',
             b'{"text": "cut off',  # invalid JSON
             b'[1, 2, 3]',  # JSON, but not an object with text
             b'{"text": 42}',
             b'\xff\xfe not utf-8 \x00',
             b'{"text": "' + b"a" * (6 * 1024 * 1024) + b'"}']  # over max_page_bytes (5 MB)
    (dest / "rows.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (dest / "image.html").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    prose = PLANTED["files"]  # an English article re-encoded in Latin-1, with and without declaring it
    page = (SMOKE / sorted(k for k, v in prose.items() if v["kind"] == "prose")[-1]).read_text(encoding="utf-8")
    page = page.replace("</h1>\n<p>", "</h1>\n<p>Café au lait, naïve façade. ", 1)
    assert "naïve" in page
    (dest / "latin1-declared.html").write_bytes(page.replace('charset="utf-8"', 'charset="iso-8859-1"').encode("latin-1"))
    (dest / "latin1-undeclared.html").write_bytes(page.replace('<meta charset="utf-8">', "").encode("latin-1"))
    warc = (SMOKE / "crawl.warc.gz").read_bytes()
    (dest / "cut.warc.gz").write_bytes(warc[: len(warc) // 2])


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    subset = _subset(root / "smoke-html")
    _broken(root / "broken")
    # the broken folder makes ~7% of the input damaged (undecodable, truncated, invalid JSON): allowed here
    config = Config(sources=[str(root / "smoke-html"), str(root / "broken")], shard_size=40, max_error_fraction=0.2)
    out = root / "out"
    out.mkdir()
    ctx = StepContext("curate", tracker=NullTracker(), scratch=root / "scratch")
    metrics = run(config, {}, out, ctx)
    stats = json.loads((out / "stats.json").read_text())
    return {"root": root, "config": config, "out": out, "metrics": metrics, "stats": stats, "ctx": ctx,
            "rows": corpus_records(out), "subset": subset}


def _sources(rows: list[dict]) -> set[str]:
    return {r["metadata"]["source"].split("/", 1)[1] for r in rows}


def test_output_layout_and_records(curated):
    rows, out = curated["rows"], curated["out"]
    parts = sorted(p.name for p in (out / "documents").iterdir())
    assert parts == [f"part-{i:05d}.jsonl.gz" for i in range(len(parts))] and len(parts) == -(-len(rows) // 40)
    assert sorted(p.name for p in out.iterdir()) == ["documents", "stats.json"]  # no datatrove logs in output
    assert len(rows) == curated["stats"]["docs_out"] > 20
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == {"id", "text", "metadata"} and r["text"].strip()
        assert r["metadata"]["language"] == "en" and r["metadata"]["language_score"] >= 0.65
        assert r["metadata"]["url"].startswith("https://") and r["metadata"]["source"]


def test_boilerplate_is_removed(curated):
    text = "\n".join(r["text"] for r in curated["rows"])
    leaked = [m for m in PLANTED["boilerplate_markers"] if m in text]
    assert leaked == []
    assert "Notes on the" in text  # the articles themselves survive


def test_non_english_pages_are_removed_and_counted(curated):
    subset, stats = curated["subset"], curated["stats"]
    foreign = {k for k, v in subset.items() if v["kind"] == "non_english"}
    assert foreign and not (foreign & _sources(curated["rows"]))
    reasons = stats["reasons"]["language"]
    for lang in ("de", "fr", "es"):
        planted = sum(v.get("language") == lang for v in subset.values())
        assert reasons.get(f"language_{lang}", 0) >= planted
    assert curated["metrics"]["removed.language"] == stats["removed"]["language"] >= len(foreign) + 1  # +1: WARC


def test_exact_duplicates_are_removed_and_counted(curated):
    rows, subset, stats = curated["rows"], curated["subset"], curated["stats"]
    hashes = [normalised_text_hash(r["text"]) for r in rows]
    assert len(set(hashes)) == len(hashes)
    by_url = {v["url"]: k for k, v in subset.items() if v["kind"] == "prose"}
    dups = {k: by_url[v["of_url"]] for k, v in subset.items() if v["kind"] in ("exact_duplicate", "same_body_other_site")}
    kept = _sources(rows)
    for copy, original in dups.items():  # the later one in input order never stays
        assert max(copy, original) not in kept, (copy, original)
    # the first one stays unless fuzzy dedup removed it as a near-duplicate of an even earlier page
    assert sum(min(pair) in kept for pair in dups.items()) >= len(dups) - stats["removed"]["fuzzy_dedup"]
    # the truncated WARC repeats the first records of crawl.warc.gz: those are duplicates too
    assert stats["removed"]["exact_dedup"] >= len(dups) + 1
    assert stats["reasons"]["exact_dedup"] == {"duplicate": stats["removed"]["exact_dedup"]}



def test_near_duplicates_are_removed_by_fuzzy_dedup(curated):
    rows, subset, stats = curated["rows"], curated["subset"], curated["stats"]
    by_url = {v["url"]: k for k, v in subset.items() if v["kind"] == "prose"}
    near = {k: by_url[v["of_url"]] for k, v in subset.items() if v["kind"] == "near_duplicate"}
    kept = _sources(rows)
    # planted copies are edited more or less heavily: MinHash (threshold ~0.72 Jaccard) catches the close ones
    caught = [copy for copy, original in near.items() if (copy in kept) + (original in kept) == 1]
    assert caught and all(min(near[c], c) in kept for c in caught)  # the first in input order stays
    # what stays has no pair above 0.85 word 5-gram Jaccard (what MinHash catches with probability > 0.99)
    assert jaccard_pairs([r["text"] for r in rows], n_grams=5, threshold=0.85) == {}
    assert stats["removed"]["fuzzy_dedup"] >= len(caught)
    assert stats["reasons"]["fuzzy_dedup"] == {"near_duplicate": stats["removed"]["fuzzy_dedup"]}
    assert curated["metrics"]["removed.fuzzy_dedup"] == stats["removed"]["fuzzy_dedup"]


def test_junk_is_removed(curated):
    subset, stats = curated["subset"], curated["stats"]
    junk = {k for k, v in subset.items() if v["kind"] == "junk"}
    assert junk and not (junk & _sources(curated["rows"]))
    assert stats["removed"]["extraction"] >= 3  # the script-only app shells
    assert stats["removed"]["gopher_repetition"] > 0 and stats["removed"]["gopher_quality"] > 0


def test_counts_add_up(curated):
    stats, metrics = curated["stats"], curated["metrics"]
    assert stats["docs_in"] == stats["docs_out"] + sum(stats["removed"].values()) + sum(stats["skipped"].values())
    assert stats["docs_read"] == stats["docs_in"] - sum(stats["skipped"].values())
    assert metrics["docs_in"] == stats["docs_in"] and metrics["docs_out"] == stats["docs_out"]
    # sizes are measured, not estimated: tokens are the tokenize stage's to count
    assert "tokens_out" not in stats and "tokens_out" not in metrics
    assert stats["chars_out"] == sum(len(r["text"]) for r in curated["rows"]) == metrics["chars_out"] > 0
    assert stats["words_out"] == sum(len(r["text"].split()) for r in curated["rows"]) == metrics["words_out"]
    assert curated["ctx"].tracker.metrics == []  # returned, not logged: the executor logs what a stage returns


def test_malformed_inputs_are_skipped_and_counted(curated):
    stats, rows = curated["stats"], curated["rows"]
    skipped = stats["skipped"]
    assert skipped["empty"] == 3  # empty .html, .warc.gz and .jsonl files
    assert skipped["binary"] == 2  # a PNG named .html, a PNG body served as text/html in a WARC
    # Latin-1 without a declaration, and Latin-1 declared as UTF-8 in a WARC, decode as a browser shows them
    assert skipped["undecodable"] == 0
    assert skipped["truncated"] == 1
    assert skipped["too_large"] == 3  # the 50 MB page, the 50 MB WARC record, the 6 MB JSONL line
    assert skipped["invalid_json"] == 4
    assert skipped["not_html"] >= 1  # the JSON response inside the WARC
    assert curated["metrics"]["skipped.too_large"] == 3
    damaged = stats["damaged"]  # what the error budget counts: damage, not pages declined by policy
    assert damaged["reasons"] == {"invalid_json": 4, "truncated": 1} and damaged["count"] == 5
    assert damaged["samples"]["truncated"] == {"file": "broken/cut.warc.gz", "offset": damaged["samples"]["truncated"]["offset"],
                                               "detail": ""}
    assert damaged["samples"]["invalid_json"]["file"] == "broken/rows.jsonl"
    first_line = b'{"text": ' + json.dumps(PROSE_TEXT).encode() + b', "id": "jsonl-prose", "url": "https://example.org/j"}\n'
    assert damaged["samples"]["invalid_json"]["offset"] == len(first_line)  # the second line starts there
    assert curated["metrics"]["damaged"] == 5
    declared = [r for r in rows if r["metadata"]["source"] == "broken/latin1-declared.html"]
    assert len(declared) == 1 and "Café au lait, naïve façade." in declared[0]["text"]
    # the undeclared copy decodes to the same text (windows-1252): an exact duplicate of the declared one
    assert curated["stats"]["reasons"]["exact_dedup"]["duplicate"] >= 1
    assert not any(r["metadata"]["source"] == "broken/latin1-undeclared.html" for r in rows)
    # records before the cut in the truncated WARC were read (then removed as duplicates of the full WARC)
    assert not any(r["metadata"]["source"] == "broken/cut.warc.gz" for r in rows)
    # the valid JSONL line is a text document: it skips extraction and keeps its id and url
    jsonl = [r for r in rows if r["id"] == "jsonl-prose"]
    assert len(jsonl) == 1 and jsonl[0]["text"] == PROSE_TEXT
    assert jsonl[0]["metadata"]["extraction"] == "none" and jsonl[0]["metadata"]["url"] == "https://example.org/j"
    assert stats["extraction_paths"]["none"] == 1


def test_output_is_deterministic_and_independent_of_workers(curated, tmp_path):
    out = tmp_path / "again"
    out.mkdir()
    config = curated["config"].model_copy(update={"workers": 2})
    assert config.result_fields() == curated["config"].result_fields()  # workers cannot change the result
    run(config, {}, out, StepContext("curate"))
    first = curated["out"]
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (out / name).read_bytes(), name


def test_missing_source_raises_input_error(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(InputError, match="no-such-folder"):
        run(Config(sources=[str(missing)]), {}, tmp_path, StepContext("curate"))
    (tmp_path / "notes.txt").write_text("not a web page")
    with pytest.raises(InputError, match="notes.txt"):
        run(Config(sources=[str(tmp_path / "notes.txt")]), {}, tmp_path, StepContext("curate"))
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(InputError, match="empty-folder"):
        run(Config(sources=[str(tmp_path / "empty-folder")]), {}, tmp_path, StepContext("curate"))


def test_config_marks_sources_as_external_input():
    extra = Config.model_fields["sources"].json_schema_extra
    assert extra == {"external_input": True}
    fields = Config(sources=["x"]).result_fields()
    assert "workers" not in fields and fields["gopher_quality"]["min_doc_words"] == 50
    for name, info in Config.model_fields.items():
        assert info.description, name
