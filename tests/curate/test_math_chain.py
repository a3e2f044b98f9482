"""The math chain's parts run for real: masking, the per-page math rules, the math classifier the quality stage
trains, the LLM cleanup through the generator interface, and prose pages untouched by all of it.

The whole-stage equation figure on real pages is tests/stages/curate/test_math_stage.py.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
from datatrove.data import Document

from factory.stages.curate import Config, run
from factory.curate.math.chain import MathChain
from factory.curate.math.classifier import (
    MathClassifier,
    formula_soup,
    generated_worked_examples,
    score_math_documents,
)
from factory.curate.math.cleanup import chunks, cleanup_math_documents, equations_kept
from factory.curate.math.config import MathChainConfig, MathCleanup
from factory.curate.math.mask import latex_spans, prose_view
from factory.errors import InputError
from factory.generate import OpenAIGenerator, TransformersGenerator
from factory.stage import NullTracker, StepContext
from tests.stages.synth.fake_openai import FakeOpenAI
from tests.builders import generator

SMOKE = Path(__file__).resolve().parents[2] / "examples" / "data" / "smoke-html"
FILES = json.loads((SMOKE / "planted.json").read_text())["files"]

MATH_TEXT = ("Let $f(x) = x^2 + 1$ be a function on the real line, and let $a < b$ be two of its points. "
             "By the mean value theorem there is a point $c$ between them with\n\n$$f(b) - f(a) = f'(c)(b - a)$$\n\n"
             "and since $f'(x) = 2x$ this gives the value of $c$ at once: it is the midpoint of the interval, "
             "as one can check by substituting $c = (a + b)/2$ into the formula above. The same argument works "
             "for every quadratic polynomial, which is why the midpoint appears in so many elementary proofs "
             "about parabolas and their chords.\n\n```\n>>> f = lambda x: x**2 + 1\n>>> f(2) - f(0)\n4\n```")


def _math_page(i: int) -> str:
    """A math page as a web page writes it: MathJax delimiters in the HTML, a menu around the article."""
    text = "\n\n".join(generated_worked_examples(3, seed=100 + i))
    html = re.sub(r"\$\$(.+?)\$\$", lambda m: f"\\[{m.group(1)}\\]", text, flags=re.DOTALL)
    html = re.sub(r"\$([^$]+?)\$", lambda m: f"\\({m.group(1)}\\)", html)
    paras = "".join(f"<p>{p}</p>" for p in html.split("\n\n"))
    return (f"<html><body><nav><a href='/'>Home</a> <a href='/prev'>Previous topic</a></nav><main><h1>Worked "
            f"examples {i}</h1>{paras}</main><footer>Created using a static site generator</footer></body></html>")


def test_prose_view_masks_latex_and_code():
    view = prose_view(MATH_TEXT)
    assert "$" not in view and "```" not in view and ">>>" not in view
    assert view.startswith("Let formula be a function on the real line, and let formula be two of its points.")
    assert "there is a point formula between them with\n\nand since formula this gives" in view
    assert latex_spans(MATH_TEXT)[:3] == ["$f(x) = x^2 + 1$", "$a < b$", "$c$"]
    assert "$$f(b) - f(a) = f'(c)(b - a)$$" in latex_spans(MATH_TEXT)
    assert latex_spans("it costs \\$5 and \\$10") == [] and latex_spans("```\n$x$\n```") == []


def test_math_rules_keep_math_the_prose_rules_drop_and_pass_prose_through():
    from factory.curate.filters import GopherQualityFilter

    step = MathChain(MathChainConfig(), ["en"], 0.65, None)
    math = Document(text=MATH_TEXT, id="m", metadata={"extraction": "math"})
    soup = Document(text=formula_soup(2, [MATH_TEXT], seed=1)[0], id="s", metadata={"extraction": "math"})
    prose = Document(text="just prose", id="p", metadata={"extraction": "trafilatura"})
    # the prose rule reads LaTeX as words without letters; on the prose view the page is fine
    assert GopherQualityFilter(max_non_alpha_words_ratio=0.8).filter(Document(text=MATH_TEXT, id="m")) is not True
    out = list(step.run(iter([math, soup, prose])))
    assert out == [prose]  # prose passes on untouched; math pages leave for the chain's own output
    counts = {k: v.total for k, v in step.stats.stats.items()}
    assert counts["total"] == 2 and counts["forwarded"] == 1 and counts["dropped"] == 1
    assert math.metadata["language"] == "en" and math.metadata["language_score"] > 0.9
    off = MathChain(MathChainConfig(quality={"enabled": False}, repetition={"enabled": False}), ["fr"], 0.0, None)
    assert off.check(Document(text=MATH_TEXT, id="m")) == "language_en"


def test_cleanup_keeps_equations_or_keeps_the_page(tmp_path):
    furniture = "Previous topic | Next topic | Quick search"
    page = f"{furniture}\n\n{MATH_TEXT}"

    def tidy(prompt: str) -> str:  # a scripted model behind a real HTTP server: drops the furniture line
        return prompt.split("Text:\n", 1)[1].replace(furniture, "").strip()

    def lossy(prompt: str) -> str:  # drops the display equation
        return re.sub(r"\$\$.+?\$\$", "", tidy(prompt), flags=re.DOTALL)

    config = MathCleanup(enabled=True, generator={"kind": "openai", "base_url": "http://unused", "model": "m"}, max_chars=4000)
    for reply, expected in ((tidy, MATH_TEXT), (lossy, page)):
        docs = [Document(text=page, id="m", metadata={"extraction": "math"}),
                Document(text=furniture, id="p", metadata={"extraction": "trafilatura"})]
        with FakeOpenAI(reply=reply) as server:
            out, counts = cleanup_math_documents(docs, config, OpenAIGenerator(server.url, "m", max_retries=0))
        assert out[0].text == expected and out[1].text == furniture  # prose is never sent
        assert counts["pages"] == 1 and counts["chunks"] == 1
        assert counts["rewritten" if reply is tidy else "kept_lost_equations"] == 1

    # a real (tiny, untrained) local model: its output loses the equations, so the page stays as extracted
    model = generator(tmp_path / "gpt2")
    short = "We have $a^2 + b^2 = c^2$ for the sides."
    docs = [Document(text=short, id="m", metadata={"extraction": "math"})]
    local = MathCleanup(enabled=True, generator={"model_dir": str(model)}, max_new_tokens=8)
    out, counts = cleanup_math_documents(docs, local, TransformersGenerator(str(model)))
    assert out[0].text == short and counts["kept_lost_equations"] + counts["kept_empty"] == 1

    assert equations_kept("$a$ and $$b+c$$", "$$a$$ and $b + c$") == 1.0 and equations_kept("$x$", "x") == 0.0
    assert chunks("a\n\nb\n\nc", 4) == ["a\n\nb", "c"]
    bad = tmp_path / "prompt.txt"
    bad.write_text("no slot")
    with pytest.raises(InputError, match="prompt_file: .* must contain \\{document\\} exactly once"):
        cleanup_math_documents(docs, MathCleanup(enabled=True, generator={"model_dir": "m"}, prompt_file=str(bad)))
    with pytest.raises(ValueError, match="needs base_url and model"):
        MathCleanup(enabled=True, generator={"kind": "openai"})
    with pytest.raises(ValueError, match=r"needs generator.model_dir"):
        MathCleanup(enabled=True)
    with pytest.raises(ValueError, match=r"kind, base_url: the cleanup's model is set in cleanup.generator now"):
        MathCleanup(enabled=True, kind="openai", base_url="http://unused")


def test_quality_stage_trains_the_math_classifier(classifier):
    art, metrics = classifier, classifier.manifest["metrics"]
    manifest = json.loads((Path(art.path) / "math" / "classifier.json").read_text())
    assert manifest["training"]["sympy_docstrings"] == 120 and manifest["training"]["generated_examples"] == 80
    assert sum(manifest["training"].values()) == 400  # as many negatives as positives
    assert metrics["math_auc"] > 0.95 and metrics["math_positives"] == metrics["math_negatives"] == 200
    clf = MathClassifier.load(Path(art.path))
    unseen = generated_worked_examples(5, seed=99) + [MATH_TEXT]
    junk = formula_soup(4, unseen, seed=3) + ["Home | About | Contact | Login | Cart"] * 2
    p_math, p_junk = clf.probabilities(unseen), clf.probabilities(junk)
    assert p_math.min() > 0.9 and p_junk.max() < 0.5
    docs = [Document(text=t, id=str(i), metadata={"extraction": "math"}) for i, t in enumerate(unseen + junk)]
    kept, dropped = score_math_documents(docs, clf, 0.5, (4, 8, 12, 16), "artifact")
    assert [d.id for d in kept] == [str(i) for i in range(len(unseen))] and dropped == len(junk)
    assert all(d.metadata["quality_tier"] == 4 and d.metadata["quality_math"] >= 0.9 for d in kept)
    with pytest.raises(InputError, match="has no math classifier .* retrain it"):
        score_math_documents(docs, None, 0.5, (4, 8, 12, 16), "old-artifact")


def _rows(out: Path) -> list[dict]:
    with gzip.open(out / "documents" / "part-00000.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def test_prose_is_curated_exactly_as_without_math_pages(classifier, tmp_path, monkeypatch):
    """Math pages added to a prose corpus (and cleaned, and scored by the math classifier) change nothing for
    the prose pages: the same documents, texts and quality tiers, with tiers calibrated on the corpus."""
    from factory.stages.curate import stage as pipeline

    monkeypatch.setattr(pipeline, "MIN_CALIBRATION_DOCS", 5)
    prose, maths = tmp_path / "prose", tmp_path / "math"
    prose.mkdir()
    maths.mkdir()
    for name in sorted(k for k, v in FILES.items() if v["kind"] == "prose")[:14]:
        shutil.copy(SMOKE / name, prose / name)
    for i in range(3):
        (maths / f"math-{i}.html").write_text(_math_page(i))
    art = classifier

    def curate(sources: list[Path], name: str, **settings) -> tuple[dict, list[dict]]:
        out = tmp_path / name
        out.mkdir()
        ctx = StepContext("curate", tracker=NullTracker(), scratch=tmp_path / f"scratch-{name}")
        metrics = run(Config(sources=[str(s) for s in sources], quality={"enabled": True}, **settings), {"quality": art}, out, ctx)
        stats = json.loads((out / "stats.json").read_text())
        return stats | {"metrics": metrics}, _rows(out)

    alone, alone_rows = curate([prose], "alone")
    with FakeOpenAI(reply=lambda p: p.split("Text:\n", 1)[1].strip()) as server:
        cleanup = {"enabled": True, "generator": {"kind": "openai", "base_url": server.url, "model": "m"}}
        mixed, mixed_rows = curate([prose, maths], "mixed", math={"chain": {"cleanup": cleanup}})
    math_rows = [r for r in mixed_rows if r["metadata"]["extraction"] == "math"]
    assert [r for r in mixed_rows if r["metadata"]["extraction"] != "math"] == alone_rows
    assert alone["paths"]["prose"] == {k: v for k, v in mixed["paths"]["prose"].items()}
    assert alone["paths"]["prose"]["kept"] == len(alone_rows) >= 10
    # the generated pages share their phrasing: dedup treats math pages as it treats prose
    path = mixed["paths"]["math"]
    assert path["in"] == 3 and path["kept"] == len(math_rows) == 3 - path["removed"]["fuzzy_dedup"] >= 2
    assert path["removed"]["math_filters"] == path["removed"]["math_classifier"] == 0
    assert all(r["metadata"]["quality_math"] >= 0.5 and r["metadata"]["quality_tier"] >= 2 for r in math_rows)
    assert all("$$" in r["text"] and "Previous topic" not in r["text"] for r in math_rows)
    assert mixed["math_cleanup"] == {"pages": 3, "chunks": 3, "rewritten": 3, "kept_lost_equations": 0, "kept_empty": 0}
    assert mixed["metrics"]["path.math.kept"] == len(math_rows) and mixed["metrics"]["math_cleanup.rewritten"] == 3
    assert mixed["tiers"] == {str(t): sum(r["metadata"]["quality_tier"] == t for r in mixed_rows) for t in range(5)}


def test_math_rules_decide_as_datatrove_stock_filters():
    """The chain's Gopher rules (cached spaCy words, numpy n-grams) give datatrove's own filters' verdicts, with the
    math thresholds, on math prose views and on prose pages."""
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

    from factory.curate.filters import extract_main_text

    chain = MathChain(MathChainConfig(), ["en"], 0.65, None)
    q, r = chain.chain.quality, chain.chain.repetition
    stock = [GopherQualityFilter(**q.thresholds()), GopherRepetitionFilter(**r.thresholds())]
    assert q.max_non_alpha_words_ratio == 0.7 and r.dup_line_frac == 0.6  # the math thresholds, not the prose ones
    pages = [extract_main_text(p.read_text(encoding="utf-8"), "resiliparse_rules") for p in sorted(SMOKE.glob("*.htm*"))[:40]]
    texts = [MATH_TEXT, MATH_TEXT * 3] + formula_soup(6, [MATH_TEXT], seed=2) + generated_worked_examples(6, seed=3) + pages
    views = [Document(text=prose_view(t), id=str(i)) for i, t in enumerate(texts)]
    ours = chain._build()
    got = [[rule.filter(v) for rule in ours] for v in views]
    assert got == [[rule.filter(v) for rule in stock] for v in views]
    assert {str(v) for row in got for v in row} >= {"True"} and any(v is not True for row in got for v in row)
