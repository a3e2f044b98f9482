"""The curate stage's corpus-level options, run for real on a slice of the smoke corpus: semantic dedup,
decontamination against an evaluation file, quality tiers from a quality-stage artifact (the "quality" input, then
the same folder as a given `quality_model`), JSONL and WET inputs, the choice of extractor, and the Ray executor."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import pytest

from factory.stages.curate import Config, run
from factory.curate.filters import EXTRACTORS, extract_main_text
from factory.errors import InputError
from factory.stage import NullTracker, StepContext
from tests.spine import corpus_records

SMOKE = Path(__file__).resolve().parents[3] / "examples" / "data" / "smoke-html"
PLANTED = json.loads((SMOKE / "planted.json").read_text())
FILES = PLANTED["files"]


def _near_pairs() -> dict[str, str]:
    by_url = {v["url"]: k for k, v in FILES.items() if v["kind"] == "prose"}
    return {k: by_url[v["of_url"]] for k, v in FILES.items() if v["kind"] == "near_duplicate"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """30 prose pages plus every near-duplicate pair, and an evaluation file that quotes one of the pages."""
    root = tmp_path_factory.mktemp("options")
    pages = root / "pages"
    pages.mkdir()
    names = sorted(k for k, v in FILES.items() if v["kind"] == "prose")[:30]
    names += [n for pair in _near_pairs().items() for n in pair]
    for name in sorted(set(names)):
        shutil.copy(SMOKE / name, pages / name)
    leaked = sorted(set(names))[3]
    passage = " ".join(extract_main_text((SMOKE / leaked).read_text(), "trafilatura").split()[20:45])
    evals = root / "evals.jsonl"
    evals.write_text(json.dumps({"question": passage, "answer": "yes"}) + "\n" + json.dumps({"question": "too short"}) + "\n")
    return {"root": root, "pages": pages, "evals": evals, "leaked": leaked}


@pytest.fixture(scope="module")
def trained(corpus, classifier):
    config = Config(
        sources=[str(corpus["pages"])],
        semantic_dedup={"enabled": True, "threshold": 0.9, "embedding": {"max_tokens": 128}},
        decontamination_sets=[str(corpus["evals"])],
        quality={"enabled": True},
    )
    out = corpus["root"] / "out"
    out.mkdir()
    ctx = StepContext("curate", tracker=NullTracker(), scratch=corpus["root"] / "scratch")
    metrics = run(config, {"quality": classifier}, out, ctx)
    return {"out": out, "metrics": metrics, "stats": json.loads((out / "stats.json").read_text()),
            "rows": corpus_records(out), "ctx": ctx}


def test_semantic_dedup_removes_what_minhash_leaves(trained):
    stats, rows = trained["stats"], trained["rows"]
    kept = {r["metadata"]["source"].split("/", 1)[1] for r in rows}
    assert stats["removed"]["semantic_dedup"] >= 1
    assert trained["metrics"]["removed.semantic_dedup"] == stats["removed"]["semantic_dedup"]
    # every planted near-duplicate pair (edited copies of one article) ends with at most one copy
    for copy, original in _near_pairs().items():
        assert (copy in kept) + (original in kept) <= 1, (copy, original)


def test_decontamination_removes_the_quoted_page(trained, corpus):
    stats, rows = trained["stats"], trained["rows"]
    assert not any(r["metadata"]["source"].endswith(corpus["leaked"]) for r in rows)
    assert stats["removed"]["decontamination"] == 1
    assert stats["reasons"]["decontamination"] == {"evals": 1}
    assert trained["metrics"]["removed.decontamination"] == 1


def test_quality_tiers_in_metadata_metrics_and_plot(trained, classifier):
    stats, rows, metrics, out = trained["stats"], trained["rows"], trained["metrics"], trained["out"]
    for r in rows:
        m = r["metadata"]
        assert 0 <= m["quality_bucket"] <= 19 and 0 <= m["quality_tier"] <= 4 and isinstance(m["quality_bucket"], int)
        assert m["quality_tier"] == sum(m["quality_bucket"] >= b for b in (4, 8, 12, 16))
    tiers = [metrics[f"tier.{t}"] for t in range(5)]
    assert sum(tiers) == stats["docs_out"] == len(rows)
    assert tiers == [sum(r["metadata"]["quality_tier"] == t for r in rows) for t in range(5)]
    assert (out / "tiers.png").read_bytes()[:4] == b"\x89PNG"
    assert out / "tiers.png" in trained["ctx"].tracker.artifacts
    # the ensemble is the quality stage's artifact, named in the corpus' stats, not copied into it
    assert not (out / "quality_model").exists() and not (out / "ensemble.json").exists()
    assert stats["quality_model"] == {"source": "input", "uri": classifier.uri, "fingerprint": classifier.fingerprint,
                                      "calibration": "ensemble"}


def test_a_given_quality_model_scores_the_same(trained, classifier, corpus, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(classifier.path, model)
    config = Config(sources=[str(corpus["pages"])], quality_model=str(model), quality={"enabled": True})
    out = tmp_path / "out"
    out.mkdir()
    run(config, {}, out, StepContext("curate"))
    assert json.loads((out / "stats.json").read_text())["quality_model"] == {"source": "given", "path": str(model),
                                                                            "calibration": "ensemble"}
    first = {r["id"]: r["metadata"]["quality_bucket"] for r in trained["rows"]}
    again = {r["id"]: r["metadata"]["quality_bucket"] for r in corpus_records(out)}
    assert set(first) < set(again)  # no semantic dedup or decontamination this time: a superset of documents
    assert {k: again[k] for k in first} == first  # a document's bucket does not depend on the rest of the corpus


def test_jsonl_and_wet_inputs(tmp_path):
    from warcio.warcwriter import WARCWriter

    from factory.curate.quality.reference_text import stdlib_docstrings

    texts = stdlib_docstrings(n_docs=40, min_words=150)
    html = (SMOKE / sorted(k for k, v in FILES.items() if v["kind"] == "prose")[0]).read_text()
    (tmp_path / "in").mkdir()
    with gzip.open(tmp_path / "in" / "rows.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": "page", "html": html, "url": "https://example.org/page"}) + "\n")
        for i, text in enumerate(texts[:20]):
            f.write(json.dumps({"text": text}) + "\n")
    with open(tmp_path / "in" / "crawl.warc.wet.gz", "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for i, text in enumerate(texts[20:]):
            writer.write_record(writer.create_warc_record(
                f"https://example.org/wet/{i}", "conversion", payload=io.BytesIO(text.encode()),
                warc_headers_dict={"Content-Type": "text/plain"}))
    out = tmp_path / "out"
    out.mkdir()
    config = Config(sources=[str(tmp_path / "in")], gopher_quality={"enabled": False},
                    gopher_repetition={"enabled": False}, fuzzy_dedup={"enabled": False}, min_language_score=0.0)
    metrics = run(config, {}, out, StepContext("curate"))
    rows = corpus_records(out)
    stats = json.loads((out / "stats.json").read_text())
    assert metrics["docs_in"] == 41
    assert stats["extraction_paths"] == {"none": 40, "resiliparse_rules": 1}
    by_id = {r["id"]: r for r in rows}
    assert by_id["page"]["metadata"]["extraction"] == "resiliparse_rules" and "<p>" not in by_id["page"]["text"]
    wet = [r for r in rows if r["id"].startswith("in/crawl.warc.wet.gz#")]
    assert {r["text"] for r in wet} <= set(texts[20:]) and len(wet) >= 15
    assert all(r["metadata"]["url"].startswith("https://example.org/wet/") for r in wet)


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_every_extractor_strips_boilerplate_and_keeps_the_article(extractor):
    markers = PLANTED["boilerplate_markers"]
    names = sorted(k for k, v in FILES.items() if v["kind"] == "prose")[:10]
    for name in names:
        html = (SMOKE / name).read_text()
        text = extract_main_text(html, extractor)
        assert not [m for m in markers if m in text], (extractor, name)
        title = html.split("<h1>", 1)[1].split("</h1>", 1)[0]
        assert title in text


MATH_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Energy</title></head><body>
<nav><a href="/">Home</a> | <a href="/physics/">Physics</a> | <a href="/contact/">Contact us today</a></nav>
<main><article><h1>Mass and energy</h1>
<p>The most famous relation in physics says that the energy of a body at rest is proportional to its mass, and
the constant of proportionality is the square of the speed of light, which is a very large number indeed.</p>
<p>Written out, the relation reads <script type="math/tex">E = mc^2</script> and it explains why a small amount
of mass can be turned into a great deal of energy in the core of the sun and in nuclear power stations.</p>
<p>The kinetic energy of a slow body is <math><semantics><mrow><mfrac><mn>1</mn><mn>2</mn></mfrac><mi>m</mi>
<msup><mi>v</mi><mn>2</mn></msup></mrow><annotation encoding="application/x-tex">\\frac{1}{2} m v^2</annotation>
</semantics></math> which is the first term of the expansion of the full relativistic expression for energy.</p>
</article></main><footer>Copyright 2024 Physics Notes. All rights reserved.</footer></body></html>"""


@pytest.mark.skipif(shutil.which("lynx") is None, reason="the math path renders with lynx (apt-get install -y lynx)")
def test_math_pages_take_the_math_path(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "energy.html").write_text(MATH_PAGE)
    texts = {}
    for enabled in (True, False):
        out = tmp_path / f"out-{enabled}"
        out.mkdir()
        config = Config(sources=[str(tmp_path / "in")], math={"enabled": enabled}, gopher_quality={"enabled": False})
        run(config, {}, out, StepContext("curate"))
        [row] = corpus_records(out)
        texts[enabled] = row
    math, plain = texts[True], texts[False]
    assert math["metadata"]["extraction"] == "math" and plain["metadata"]["extraction"] == "resiliparse_rules"
    assert "E = mc^2" in math["text"] and "\\frac{1}{2} m v^2" in math["text"]
    assert "mc^2" not in plain["text"]  # the generic extractor loses the equations
    assert "Copyright 2024" not in math["text"]


def test_math_with_lynx_missing_names_the_fix(tmp_path, monkeypatch):
    import factory.stages.curate.stage as pipeline

    monkeypatch.setattr(pipeline.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="apt-get install -y lynx"):
        run(Config(sources=[str(SMOKE / "page-0000.html")], math={"renderer": "lynx"}), {}, tmp_path, StepContext("curate"))
    # the builtin renderer, the default, needs nothing installed
    (tmp_path / "out").mkdir()
    assert Config(sources=["x"]).math.renderer == "builtin"
    run(Config(sources=[str(SMOKE / "page-0000.html")]), {}, tmp_path / "out", StepContext("curate"))
