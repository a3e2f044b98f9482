"""Equations kept by the WHOLE curate stage, input pages to published corpus, on real math pages nobody here wrote.

Every page of python-mpmath-doc (Sphinx, MathJax `\\(...\\)`) and libdune-geometry-doc (Doxygen, LaTeX in
image alt text) that takes the math path goes through `factory curate` with default settings; an equation
counts as kept when the corpus document made from its page contains it. The same pages through the prose
heuristics (the math chain switched off, as before it existed) are the comparison.

    pytest -s tests/stages/curate/test_math_stage.py     # prints equations kept and pages kept, both ways

Install the pages with `apt-get install -y python-mpmath-doc libdune-geometry-doc` (tests/setup.sh does);
the tests skip, naming the package, when one is missing.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from factory.stages.curate import Config, run
from factory.curate.math import has_math, stage_preservation
from factory.stage import NullTracker, StepContext

PACKAGES = ("python-mpmath-doc", "libdune-geometry-doc")


def _math_pages(package: str) -> dict[str, str]:
    """The package's HTML pages that carry equations (name -> HTML), as `dpkg -L` lists them."""
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg not found: these tests read HTML that Debian packages install")
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        pytest.skip(f"Debian package {package} not installed (apt-get install -y {package})")
    pages = {}
    for path in sorted(Path(p) for p in listed.stdout.splitlines() if p.endswith(".html")):
        html = path.read_text(encoding="utf-8", errors="replace")
        if has_math(html):
            # one flat name per page: the stage records it as the document's source
            pages[f"{package}--{path.parent.name}--{path.name}"] = html
    return pages


def _curate(pages: dict[str, str], folder: Path, **settings) -> tuple[dict, dict[str, str]]:
    """Run the stage on `pages`; (stats.json, corpus text by page name)."""
    src = folder / "pages"
    src.mkdir(parents=True)
    for name, html in pages.items():
        (src / name).write_text(html, encoding="utf-8")
    out = folder / "corpus"
    out.mkdir()
    ctx = StepContext("curate", tracker=NullTracker(), scratch=folder / "scratch")
    metrics = run(Config(sources=[str(src)], **settings), {}, out, ctx)
    corpus = {}
    for part in sorted((out / "documents").glob("*.jsonl.gz")):
        with gzip.open(part, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                corpus[Path(row["metadata"]["source"]).name] = row["text"]
    stats = json.loads((out / "stats.json").read_text())
    stats["metrics"] = metrics
    return stats, corpus


@pytest.fixture(scope="module")
def pages():
    found = {}
    for package in PACKAGES:
        found |= _math_pages(package)
    return found


@pytest.fixture(scope="module")
def default_run(pages, tmp_path_factory):
    return _curate(pages, tmp_path_factory.mktemp("math-chain"))


def test_whole_stage_keeps_95_percent_of_equations(pages, default_run):
    stats, corpus = default_run
    kept = stage_preservation(pages, corpus)
    print(f"\nwhole curate stage, default settings, {kept.pages} math pages of {', '.join(PACKAGES)}: "
          f"equations kept {kept.equations_kept}/{kept.equations} = {kept.fraction:.1%}, "
          f"pages kept {kept.pages_kept}/{kept.pages}")
    assert kept.equations >= 1000 and kept.pages >= 30  # the pages are there and full of math
    assert kept.fraction >= 0.95
    # every mpmath page with math (each has a MathJax equation per paragraph) is in the corpus
    assert all(name in corpus for name in pages if name.startswith("python-mpmath-doc"))


def test_stats_per_path(pages, default_run):
    stats, corpus = default_run
    math = stats["paths"]["math"]
    assert stats["extraction_paths"] == {"math": len(pages)}  # has_math chose the pages; the stage agrees
    assert math["in"] == len(pages) and math["kept"] == len(corpus) == stats["docs_out"]
    assert math["in"] - math["kept"] == sum(math["removed"].values())
    assert math["removed"]["math_filters"] == stats["removed"]["math_filters"]
    assert sum(math["reasons"].get("math_filters", {}).values()) == math["removed"]["math_filters"]
    # the prose filters never saw a math page
    prose = stats["paths"]["prose"]
    assert (prose["in"], prose["kept"], prose["reasons"]) == (0, 0, {}) and set(prose["removed"].values()) == {0}
    assert {"gopher_quality", "gopher_repetition", "language"} <= set(prose["removed"]) and "math_filters" not in prose["removed"]
    assert stats["metrics"]["path.math.kept"] == math["kept"] and stats["metrics"]["path.math.in"] == math["in"]
    # code blocks come out fenced, equations as LaTeX in dollars, nothing of the placeholders left
    gamma = corpus["python-mpmath-doc--functions--gamma.html"]
    assert "```\n>>> from mpmath import *" in gamma and "$x! = \\Gamma(x+1)$" in gamma and "QZ" not in gamma


def test_prose_heuristics_would_have_lost_the_equations(pages, default_run):
    """The comparison: the corpus' math pages through the prose filters' Gopher rules (what the stage did before
    the chain) keep few of the equations the chain keeps."""
    from datatrove.data import Document

    from factory.curate.filters import GopherQualityFilter

    rules = (GopherQualityFilter(),)  # the quality rule alone already drops them (repetition drops more)
    _, corpus = default_run
    passed = {name: text for name, text in corpus.items()
              if all(rule.filter(Document(text=text, id=name)) is True for rule in rules)}
    before, after = stage_preservation(pages, passed), stage_preservation(pages, corpus)
    print(f"\nthe same pages through the prose Gopher quality rule: equations kept {before.equations_kept}/{before.equations}"
          f" = {before.fraction:.1%}, pages kept {before.pages_kept}/{before.pages}")
    assert before.fraction < 0.2 and after.fraction > before.fraction + 0.75


def test_math_classifier_on_the_stage_output(pages, default_run, classifier):
    """The math classifier (as the quality stage trains it, default settings) scoring the corpus' math pages, as
    curate does when quality scoring is on: the equations still survive."""
    from datatrove.data import Document

    from factory.curate.math.classifier import MathClassifier, score_math_documents

    artifact = classifier.path
    _, corpus = default_run
    docs = [Document(text=text, id=name, metadata={"extraction": "math"}) for name, text in corpus.items()]
    kept, dropped = score_math_documents(docs, MathClassifier.load(artifact), 0.5, (4, 8, 12, 16), str(artifact))
    after = stage_preservation(pages, {d.id: d.text for d in kept})
    print(f"\nwith the math classifier (min_math_score 0.5): equations kept {after.equations_kept}/{after.equations} = "
          f"{after.fraction:.1%}, pages kept {after.pages_kept}/{after.pages}")
    assert after.fraction >= 0.95 and dropped <= 2


def test_the_chain_can_be_switched_off():
    from factory.stages.curate.stage import pipeline_steps

    on = pipeline_steps(Config(sources=["x"]), [])[1]
    off = pipeline_steps(Config(sources=["x"], math={"chain": {"enabled": False}}), [])[1]
    assert on[:3] == ["extraction", "math_filters", "language"] and "math_filters" not in off
