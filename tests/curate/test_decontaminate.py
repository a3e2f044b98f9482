"""Decontamination against the evaluate stage's built-in sets: the n-gram index on its own, then the curate
stage run for real on JSONL documents (no extraction), one of which quotes a built-in cloze passage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from factory.curate.decontaminate import NgramIndex, eval_items, read_eval_file
from factory.curate.quality.reference_text import stdlib_docstrings
from factory.stage import NullTracker, StepContext
from factory.stages.curate import Config, run
from factory.tasks.builtin import builtin_eval_items
from factory.tasks.sets import builtin_path, read_set
from tests.spine import corpus_records

ITEM = read_set(builtin_path("stdlib_cloze"))[7]
PASSAGE = ITEM.context + ITEM.target + "."


def _clean_prose() -> str:
    """A long prose document that the Gopher filters keep and that quotes no evaluation item."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

    index = NgramIndex(eval_items([], builtin_eval_items()))
    rules = (GopherQualityFilter(), GopherRepetitionFilter())
    return next(t for t in stdlib_docstrings(n_docs=50, min_words=150)
                if index.match(t) is None and all(rule.filter(Document(text=t, id="x")) is True for rule in rules))


CLEAN = _clean_prose()


def test_builtin_items_are_whole_passages_named_by_set():
    items = eval_items([], builtin_eval_items())
    cloze = [text for name, text in items if name == "stdlib_cloze"]
    assert len(cloze) == len(read_set(builtin_path("stdlib_cloze"))) >= 100
    assert ITEM.context + ITEM.target in cloze
    assert ("evaluate_prompts", "The history of the city") in items
    assert eval_items([]) == []


def test_a_document_quoting_a_builtin_passage_is_matched():
    index = NgramIndex(eval_items([], builtin_eval_items()), n_gram=13, min_item_words=8)
    assert index.match(f"{CLEAN}\n\nAs the manual puts it: {PASSAGE.upper()} That is all.") == "stdlib_cloze"
    assert index.match(CLEAN) is None
    # 12 words of the passage are not a 13-gram
    assert index.match(" ".join(ITEM.context.split()[:12])) is None
    assert NgramIndex(eval_items([])).match(PASSAGE) is None


def test_jsonl_reader_joins_context_and_target(tmp_path):
    path = tmp_path / "cloze.jsonl"
    path.write_text(json.dumps({"id": "a", "context": "one two three", "target": " four", "source": "x"}) + "\n")
    assert read_eval_file(path) == ["one two three four", "a", "x"]


def test_reading_the_builtin_sets_loads_no_torch():
    code = ("import sys; from factory.curate.decontaminate import eval_items; "
            "from factory.tasks.builtin import builtin_eval_items; eval_items([], builtin_eval_items()); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two JSONL documents: clean prose, and other prose with a built-in passage in its middle."""
    root = tmp_path_factory.mktemp("decontaminate")
    other = next(t for t in stdlib_docstrings(n_docs=50, min_words=150, seed=1) if t != CLEAN)
    leaked = other + "\n\n" + PASSAGE + "\n\n" + other.split("\n\n")[0]
    rows = [{"id": "clean", "text": CLEAN}, {"id": "leaked", "text": leaked}]
    (root / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _curate(source, out, builtin_sets):
    config = Config(sources=[str(source / "docs.jsonl")], quality={"enabled": False}, exact_dedup=False,
                    fuzzy_dedup={"enabled": False}, gopher_repetition={"enabled": False},
                    decontamination={"builtin_sets": builtin_sets})
    out.mkdir()
    run(config, {}, out, StepContext("curate", tracker=NullTracker(), scratch=out.parent / f"{out.name}-scratch"))
    return json.loads((out / "stats.json").read_text()), [r["text"] for r in corpus_records(out)]


def test_curate_removes_the_leaked_document_under_the_set_name(source, tmp_path):
    stats, texts = _curate(source, tmp_path / "on", builtin_sets=True)
    assert stats["removed"]["decontamination"] == 1
    assert stats["reasons"]["decontamination"] == {"stdlib_cloze": 1}
    assert texts == [CLEAN]

    stats, texts = _curate(source, tmp_path / "off", builtin_sets=False)
    assert stats["removed"]["decontamination"] == 0
    assert len(texts) == 2 and CLEAN in texts
