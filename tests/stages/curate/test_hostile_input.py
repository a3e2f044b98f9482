"""The curate stage on hostile input (issue 25), run for real: a crawl holding one input of each class ends in
seconds, crashes on none, reads every good page, and counts the rest in records; the caps are config fields,
honoured, and in the step's fingerprint."""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

import brotli

from factory.curate.streams import ReadCaps
from factory.stage import NullTracker, StepContext
from factory.stages.curate import Config, run
from factory.stages.curate.stage import pipeline_steps
from tests.curate.malformed import PAGE, coded_warc_record, newline_jsonl, ratio_members, warc_record
from tests.spine import corpus_records

PROSE = ("The river ran past the old mill, and the people of the town walked along its banks in the evening to "
         "watch the boats come home. ")


def _page(n: int) -> str:
    return PAGE.format(n=n).replace("<p>", f"<p>{PROSE * 3}", 1)


def _config(root: Path, **update) -> Config:
    # the per-page steps and exact dedup: the reader and extraction are what is under test
    return Config(sources=[str(root)], fuzzy_dedup={"enabled": False}, decontamination={"enabled": False},
                  gopher_quality={"enabled": False}, gopher_repetition={"enabled": False}, max_error_fraction=1.0,
                  **update)


def _run(config: Config, tmp_path: Path) -> tuple[dict, list[dict], float]:
    out = tmp_path / "out"
    out.mkdir(parents=True)
    start = time.perf_counter()
    run(config, {}, out, StepContext("curate", tracker=NullTracker(), scratch=tmp_path / "scratch"))
    return json.loads((out / "stats.json").read_text()), corpus_records(out), time.perf_counter() - start


def test_a_hostile_crawl_ends_in_seconds_and_keeps_every_good_page(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    # crashes: lone surrogates in a record's id and url (the corpus writer raised UnicodeEncodeError); a link loop
    (src / "rows.jsonl").write_bytes(b'{"id": "surrogate-\\ud800", "url": "https://example.org/\\udfff", "text": "'
                                     + PROSE.encode() * 2 + b'"}\n')
    (src / "loop.html").symlink_to("loop.html")
    # hangs: a gigabyte of newlines in a megabyte; members at deflate's extreme ratio under any cap in bytes
    newline_jsonl(src / "newlines.jsonl.gz", 1_000_000)
    ratio_members(src / "members.warc.gz", members=2, expanded=60 << 20)
    # good pages that were lost: a WARC gzipped whole, UTF-16, a record start across the 64 KiB read, brotli, a JSONL
    # line over the member cap, Latin-1 that says UTF-8; slow: a page crafted against the canonical-address pattern
    whole = b"".join(warc_record(f"https://example.org/whole/{i}", _page(i).encode()) for i in range(40))
    (src / "whole.warc.gz").write_bytes(gzip.compress(whole, mtime=0))
    (src / "utf16.html").write_bytes(_page(101).encode("utf-16"))
    (src / "straddle.warc").write_bytes(b"J" + b"x" * 65530 + warc_record("https://example.org/straddle", _page(102).encode()))
    (src / "br.warc").write_bytes(coded_warc_record("https://example.org/br", brotli.compress(_page(103).encode()), "br"))
    (src / "long.jsonl").write_bytes(b'{"text": "' + b"a" * 40_000 + b'"}\n{"id": "after-long", "text": "'
                                     + PROSE.encode() * 3 + b'"}\n')
    (src / "latin1.html").write_bytes(_page(104).replace("<head>", '<head><meta charset="utf-8">')
                                      .replace("Paragraph", "Café naïve paragraph").encode("latin-1"))
    (src / "canonical.html").write_bytes((_page(105).replace("<head>", "<head>" + "<link rel=canonical href=" * 700)).encode())
    config = _config(src, max_page_bytes=20_000, max_header_bytes=1024, max_member_bytes=30_000)
    stats, rows, seconds = _run(config, tmp_path)
    assert seconds < 60
    ids = {r["id"] for r in rows}
    assert "surrogate-\ufffd" in ids and "after-long" in ids
    assert {r["metadata"]["url"] for r in rows if r["id"].startswith("in/whole")} == {f"https://example.org/whole/{i}" for i in range(40)}
    for name in ("utf16.html", "latin1.html", "canonical.html", "straddle.warc#0", "br.warc#0"):
        assert f"in/{name}" in ids, name
    assert any("Café naïve paragraph" in r["text"] for r in rows)
    skipped = stats["skipped"]
    assert skipped["unreadable"] == 1 and skipped["too_large"] >= 3 and skipped["bad_warc_header"] == 1
    assert stats["docs_in"] == stats["docs_read"] + sum(skipped.values())


def test_the_caps_are_config_fields_honoured_and_in_the_fingerprint(tmp_path):
    caps = {"max_page_bytes": 100_000, "max_header_bytes": 2048, "max_member_bytes": 110_000,
            "max_file_bytes": 10_000_000, "max_expansion_ratio": 2.0, "max_records_per_kib": 9}
    config = _config(tmp_path / "in", extract_memory_mb=128, **caps)
    steps, _ = pipeline_steps(config, [])
    assert steps[0].caps == ReadCaps(**caps) and steps[1].memory_mb == 128
    fields = config.result_fields()
    assert {k: fields[k] for k in [*caps, "extract_memory_mb"]} == {**caps, "extract_memory_mb": 128}
    # honoured on a run: gzipped lines of text (about 5x) past a 2x ratio, a page past 128 MiB in extraction
    src = tmp_path / "in"
    src.mkdir()
    rng = random.Random(0)
    words = PROSE.split()
    lines = [json.dumps({"id": f"dense-{i}", "text": " ".join(rng.choices(words, k=5000))}) for i in range(10)]
    (src / "dense.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode(), mtime=0))
    (src / "tags.html").write_bytes(("<html><body>" + "".join(f"<b id={i}><p>w" for i in range(4000))).encode())
    (src / "fine.html").write_bytes(_page(1).encode())
    stats, rows, _ = _run(config, tmp_path)
    assert stats["skipped"]["too_large"] == 1
    assert stats["reasons"]["extraction"] == {"out_of_memory": 1}
    assert [r["id"] for r in rows] == ["in/fine.html"]
    # the same crawl under the default caps: every line is read
    stats, rows, _ = _run(_config(src), tmp_path / "defaults")
    assert stats["skipped"]["too_large"] == 0 and sum(r["id"].startswith("dense-") for r in rows) == 10
