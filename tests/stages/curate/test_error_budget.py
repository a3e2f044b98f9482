"""The curate stage's error budget, run for real: damaged records within `max_error_fraction` are skipped and
counted in stats.json and the metrics; past it the stage fails with one line and publishes nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from factory.stages.curate import Config, run
from factory.errors import InputError
from factory.stage import NullTracker, StepContext
from tests.curate.malformed import PAGE, REGRESSION, bomb_warc
from tests.spine import corpus_records

N = 200


def _lines(n_good: int, n_broken: int) -> bytes:
    """`n_good` English text records, then `n_broken` lines that are not JSON, spread through the file."""
    good = [json.dumps({"id": f"r{i}", "text": f"Record {i}. The river ran past the old mill, and the people of the "
                        "town walked along its banks in the evening to watch the boats come home."}).encode()
            for i in range(n_good)]
    step = max(1, n_good // max(1, n_broken))
    for k in range(n_broken):
        good.insert(k * step + k, b'{"id": "broken", "text": "cut off')
    return b"\n".join(good) + b"\n"


def _config(root: Path, **update) -> Config:
    # fast: text records skip extraction; no dedup beyond exact, no decontamination
    return Config(sources=[str(root)], fuzzy_dedup={"enabled": False}, decontamination={"enabled": False},
                  gopher_quality={"enabled": False}, gopher_repetition={"enabled": False}, **update)


def _run(config: Config, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    ctx = StepContext("curate", tracker=NullTracker(), scratch=tmp_path / "scratch")
    return out, ctx, lambda: run(config, {}, out, ctx)


def test_five_percent_damaged_fails_with_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.jsonl").write_bytes(_lines(N - 10, 10))
    out, _, go = _run(_config(tmp_path / "in"), tmp_path)
    with pytest.raises(InputError) as info:
        go()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("curate: 10 of 200 records (5.0%) are damaged, over the error budget of 1.0% (max_error_fraction)")
    assert "invalid_json 10" in message and "first at in/rows.jsonl offset " in message
    offset = int(message.rsplit("offset ", 1)[1])
    assert (tmp_path / "in" / "rows.jsonl").read_bytes()[offset:].startswith(b'{"id": "broken"')
    assert list(out.iterdir()) == []  # nothing half-written
    # the same input passes with a looser budget
    out2 = tmp_path / "out2"
    out2.mkdir()
    run(_config(tmp_path / "in", max_error_fraction=0.06), {}, out2, StepContext("curate", tracker=NullTracker()))
    assert json.loads((out2 / "stats.json").read_text())["damaged"]["count"] == 10


def test_half_a_percent_damaged_finishes_and_counts_it(tmp_path):
    # 199 good records, the WARC record that crashed warcio, a gzip bomb between two pages, a file name
    # that is not UTF-8: the stage finishes; only the crash counts against the budget (1 of 204: 0.5%)
    src = tmp_path / "in"
    src.mkdir()
    (src / "rows.jsonl").write_bytes(_lines(N - 1, 0))
    shutil.copy(REGRESSION / "no-target-uri.warc", src / "no-target-uri.warc")
    bomb_warc(src / "bomb.warc.gz")
    (src / os.fsdecode(b"caf\xe9.html")).write_bytes(
        PAGE.format(n=7).replace("Paragraph", "An article that is long enough. Paragraph").encode())
    out, ctx, go = _run(_config(src), tmp_path)
    metrics = go()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["docs_in"] == 199 + 1 + 3 + 1
    assert stats["skipped"]["error_AttributeError"] == 1 and stats["skipped"]["too_large"] == 1
    assert stats["damaged"]["count"] == 1 and stats["damaged"]["reasons"] == {"error_AttributeError": 1}
    assert stats["damaged"]["samples"]["error_AttributeError"]["file"] == "in/no-target-uri.warc"
    assert stats["lost_bytes"] > 0  # the bomb's compressed bytes
    assert metrics["damaged"] == 1 and metrics["skipped.error_AttributeError"] == 1
    assert ctx.tracker.metrics == []  # returned, not logged: the executor logs what a stage returns
    sources = {r["metadata"]["source"] for r in corpus_records(out)}
    assert "in/bomb.warc.gz" in sources and "in/rows.jsonl" in sources
    assert stats["docs_out"] >= 199
