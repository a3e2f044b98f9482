"""`curate_files`: the curate stage alone on files and folders, with a manifest, refusing foreign folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli.curate import curate_files
from factory.errors import InputError
from factory.store import sha256_file

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "examples" / "data" / "smoke-html"


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    for p in sorted(SMOKE.glob("page-00*.html"))[:25]:
        shutil.copy(p, folder / p.name)
    return folder


def test_writes_the_stage_layout_and_a_manifest(pages, tmp_path):
    out = tmp_path / "corpus"
    single = SMOKE / "page-0100.html"
    manifest = curate_files([str(pages), str(single)], out, spec_path=None)
    assert sorted(p.name for p in out.iterdir()) == ["documents", "manifest.json", "stats.json"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["stage"] == "curate" and manifest["kind"] == "corpus" and len(manifest["fingerprint"]) == 64
    assert manifest["config"]["sources"] == [str(pages.resolve()), str(single.resolve())]
    assert [s["uri"] for s in manifest["sources"]] == manifest["config"]["sources"]
    assert all(s["digest"].startswith("sha256:") for s in manifest["sources"])
    for f in manifest["files"]:
        assert sha256_file(out / f["path"]) == f["sha256"]
    stats = json.loads((out / "stats.json").read_text())
    assert manifest["metrics"]["docs_out"] == stats["docs_out"] > 0
    assert not list(tmp_path.glob(".corpus*"))  # no staging or scratch folders left behind


def test_reruns_over_its_own_output_but_refuses_other_folders(pages, tmp_path):
    out = tmp_path / "corpus"
    first = curate_files([str(pages)], out)
    again = curate_files([str(pages)], out)  # a previous curate output is replaced
    assert again["fingerprint"] == first["fingerprint"] and again["files"] == first["files"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        curate_files([str(pages)], other)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="no-such"):
        curate_files([str(tmp_path / "no-such")], tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_takes_the_curate_settings_from_a_spec(pages, tmp_path):
    spec = tmp_path / "spec.yaml"
    text = (ROOT / "examples" / "smoke.yaml").read_text()
    spec.write_text(text.replace("sources: [examples/data/smoke-html]",
                                 "sources: [examples/data/smoke-html]\n    exact_dedup: false\n    fuzzy_dedup: {enabled: false}"))
    manifest = curate_files([str(pages)], tmp_path / "out", spec_path=spec)
    assert manifest["config"]["exact_dedup"] is False and manifest["config"]["fuzzy_dedup"]["enabled"] is False
    assert manifest["config"]["sources"] == [str(pages.resolve())]
    # the spec scores quality with its `quality` stage: built in the spec's store, recorded as curate's input
    quality = manifest["inputs"]["quality"]
    assert quality["kind"] == "classifier" and manifest["recipe"]["inputs"] == {"quality": quality["fingerprint"]}
    assert [e["stage"] for e in manifest["lineage"]] == ["quality"]


def test_a_folder_with_a_file_name_that_is_not_utf8_curates_end_to_end(pages, tmp_path):
    import os

    folder = tmp_path / "crawl"
    folder.mkdir()
    for page in sorted(pages.iterdir())[:2]:
        shutil.copy(page, folder / page.name)
    odd = os.fsdecode(b"caf\xe9-\xff.html")  # Latin-1 bytes in the name
    shutil.copy(SMOKE / "page-0100.html", folder / odd)
    out = tmp_path / "corpus"
    manifest = curate_files([str(folder)], out)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["files_in"] == 3 and stats["damaged"]["count"] == 0
    names = {json.loads(line)["metadata"]["source"] for line in _lines(out)}
    assert "crawl/caf\\xe9-\\xff.html" in names
    assert manifest["metrics"]["docs_out"] == stats["docs_out"]


def _lines(out: Path) -> list[str]:
    import gzip

    return [line for part in sorted((out / "documents").glob("*.jsonl.gz"))
            for line in gzip.open(part, "rt", encoding="utf-8") if line.strip()]
