"""The curate stage on a slice of the shipped smoke corpus, plus malformed inputs, run for real."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from factory.curate import KIND, Config, run
from factory.curate.filters import normalised_text_hash
from factory.errors import InputError
from factory.stage import NullTracker, StepContext

SMOKE = Path(__file__).resolve().parents[2] / "examples" / "data" / "smoke-html"
PLANTED = json.loads((SMOKE / "planted.json").read_text())


def _subset(dest: Path) -> dict[str, dict]:
    """Copy a slice of the corpus (every planted kind, the originals of its duplicates, the WARC) to `dest`."""
    files = PLANTED["files"]
    by_url = {v["url"]: k for k, v in files.items() if v["kind"] == "prose"}
    chosen: list[str] = []
    for kind, n in (("exact_duplicate", 4), ("same_body_other_site", 2), ("near_duplicate", 2)):
        for name in sorted(k for k, v in files.items() if v["kind"] == kind)[:n]:
            chosen += [name, by_url[files[name]["of_url"]]]
    chosen += sorted(k for k, v in files.items() if v["kind"] == "prose")[:20]
    chosen += sorted(k for k, v in files.items() if v["kind"] in ("non_english", "junk"))
    dest.mkdir(parents=True)
    for name in sorted(set(chosen)):
        shutil.copy(SMOKE / name, dest / name)
    shutil.copy(SMOKE / "crawl.warc.gz", dest / "crawl.warc.gz")
    return {name: files[name] for name in set(chosen)}


def _broken(dest: Path) -> None:
    """Malformed inputs: each must be skipped and counted, never crash the stage."""
    dest.mkdir(parents=True)
    (dest / "empty.html").write_bytes(b"")
    (dest / "image.html").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    prose = PLANTED["files"]  # an English article re-encoded in Latin-1, with and without declaring it
    page = (SMOKE / sorted(k for k, v in prose.items() if v["kind"] == "prose")[-1]).read_text(encoding="utf-8")
    page = page.replace("</h1>\n<p>", "</h1>\n<p>Café au lait, naïve façade. ", 1)
    assert "naïve" in page
    (dest / "latin1-declared.html").write_bytes(page.replace('charset="utf-8"', 'charset="iso-8859-1"').encode("latin-1"))
    (dest / "latin1-undeclared.html").write_bytes(page.replace('<meta charset="utf-8">', "").encode("latin-1"))
    warc = (SMOKE / "crawl.warc.gz").read_bytes()
    (dest / "cut.warc.gz").write_bytes(warc[: len(warc) // 2])


def _read_parts(folder: Path) -> list[dict]:
    rows = []
    for part in sorted((folder / "documents").glob("part-*.jsonl.gz")):
        with gzip.open(part, "rt", encoding="utf-8") as f:
            rows += [json.loads(line) for line in f]
    return rows


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    subset = _subset(root / "smoke-html")
    _broken(root / "broken")
    config = Config(sources=[str(root / "smoke-html"), str(root / "broken")], shard_size=40)
    out = root / "out"
    out.mkdir()
    ctx = StepContext("curate", tracker=NullTracker(), scratch=root / "scratch")
    metrics = run(config, {}, out, ctx)
    stats = json.loads((out / "stats.json").read_text())
    return {"root": root, "config": config, "out": out, "metrics": metrics, "stats": stats, "ctx": ctx,
            "rows": _read_parts(out), "subset": subset}


def _sources(rows: list[dict]) -> set[str]:
    return {r["metadata"]["source"].split("/", 1)[1] for r in rows}


def test_output_layout_and_records(curated):
    rows, out = curated["rows"], curated["out"]
    assert KIND == "corpus"
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
    for copy, original in dups.items():  # one of each pair stays: the one first in input order
        assert (copy in kept) + (original in kept) == 1, (copy, original)
        assert min(copy, original) in kept
    # the truncated WARC repeats the first records of crawl.warc.gz: those are duplicates too
    assert stats["removed"]["exact_dedup"] >= len(dups) + 1
    assert stats["reasons"]["exact_dedup"] == {"duplicate": stats["removed"]["exact_dedup"]}
    # near-duplicates are not exact duplicates: both copies stay (fuzzy dedup's job)
    near = {k for k, v in subset.items() if v["kind"] == "near_duplicate"}
    assert near <= _sources(rows)


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
    assert metrics["tokens_out"] == stats["chars_out"] // 4 > 0
    assert curated["ctx"].tracker.metrics == [(metrics, None)]


def test_malformed_inputs_are_skipped_and_counted(curated):
    stats, rows = curated["stats"], curated["rows"]
    assert stats["skipped"]["empty"] == 1
    assert stats["skipped"]["binary"] == 1
    assert stats["skipped"]["undecodable"] == 1
    assert stats["skipped"]["truncated"] == 1
    assert stats["skipped"]["not_html"] >= 1  # the JSON response inside the WARC
    declared = [r for r in rows if r["metadata"]["source"] == "broken/latin1-declared.html"]
    assert len(declared) == 1 and "Café au lait, naïve façade." in declared[0]["text"]
    # records before the cut in the truncated WARC were read (then removed as duplicates of the full WARC)
    assert not any(r["metadata"]["source"] == "broken/cut.warc.gz" for r in rows)


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
