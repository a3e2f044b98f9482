"""The smoke corpus generator: deterministic, and it plants what the curate filters must remove."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from factory.data import smoke_corpus
from factory.data.foreign_text import LANGUAGES

SHIPPED = Path(__file__).resolve().parents[2] / "examples" / "data" / "smoke-html"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_generator_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    smoke_corpus.main([str(a)])
    smoke_corpus.main([str(b)])
    assert _files(a) == _files(b)
    smoke_corpus.main([str(tmp_path / "c"), "--seed", "7"])
    assert _files(tmp_path / "c") != _files(a)  # the seed drives layout and planting


def test_corpus_plants_every_kind(tmp_path):
    planted = smoke_corpus.build(tmp_path / "corpus")
    kinds = Counter(v["kind"] for v in planted["files"].values())
    assert 250 <= sum(kinds.values()) + len(planted["warc"]["crawl.warc.gz"]) <= 450
    assert kinds["prose"] >= 200
    assert kinds["exact_duplicate"] == 12 and kinds["same_body_other_site"] == 4 and kinds["near_duplicate"] == 12
    assert kinds["non_english"] == 15 and kinds["junk"] >= 20
    junk = Counter(v["junk"] for v in planted["files"].values() if v["kind"] == "junk")
    assert set(junk) == {"no_content", "short", "symbols", "links", "repeated", "keyword_stuffing"}
    total = sum(p.stat().st_size for p in (tmp_path / "corpus").iterdir())
    assert total < 3_000_000


def test_pages_carry_boilerplate_and_real_prose(tmp_path):
    out = tmp_path / "corpus"
    planted = smoke_corpus.build(out)
    for name, info in sorted(planted["files"].items())[:50]:
        page = (out / name).read_text(encoding="utf-8")
        if info["kind"] == "prose":
            assert sum(m in page for m in smoke_corpus.BOILERPLATE_MARKERS) >= 5
            assert page.count("<p>") >= 3 and " the " in page
        if info["kind"] == "non_english":
            assert f'<html lang="{info["language"]}">' in page
            assert any(p[:40] in page for p in LANGUAGES[info["language"]])


def test_warc_holds_the_planted_records(tmp_path):
    from warcio.archiveiterator import ArchiveIterator

    planted = smoke_corpus.build(tmp_path / "corpus")
    with (tmp_path / "corpus" / "crawl.warc.gz").open("rb") as f:
        responses = [(r.rec_headers.get_header("WARC-Target-URI"), r.http_headers.get_header("Content-Type"))
                     for r in ArchiveIterator(f) if r.rec_type == "response"]
    expected = planted["warc"]["crawl.warc.gz"]
    assert [url for url, _ in responses] == [r["url"] for r in expected]
    assert [ct.startswith("text/html") for _, ct in responses] == [r["kind"] != "not_html" for r in expected]


def test_shipped_corpus_matches_its_description():
    planted = json.loads((SHIPPED / "planted.json").read_text())
    pages = {p.name for p in SHIPPED.iterdir() if p.suffix in (".html", ".htm")}
    assert pages == set(planted["files"]) and (SHIPPED / "crawl.warc.gz").is_file()
    assert planted["boilerplate_markers"] == list(smoke_corpus.BOILERPLATE_MARKERS)
