"""The synth stage end to end: a corpus artifact in, a corpus artifact of synthetic documents out, through a
real OpenAI-compatible server on 127.0.0.1 and through a tiny local model named by `generator.model_dir`."""

from __future__ import annotations

import gzip
import json

import pytest

from factory.stages import synth
from factory.errors import InputError
from factory.stage import Artifact, StepContext
from tests import builders
from tests.builders import generator
from tests.spine import corpus_records
from tests.stages.synth.fake_openai import FakeOpenAI

TEXT = "The old stone bridge crosses the river near the market. It was built two hundred years ago by masons."


def corpus(folder, tiers):
    """A corpus of one document per quality tier in `tiers`, and a line that is not JSON."""
    art = builders.corpus(folder, [{"id": f"doc{i}", "text": f"{TEXT} Document {i}.", "metadata": {"quality_tier": t}}
                                   for i, t in enumerate(tiers)])
    with gzip.open(folder / "documents" / "part-00000.jsonl.gz", "at") as f:  # a second gzip member
        f.write("{not json\n")
    return art


def server_reply(user: str) -> str:
    passage = user.split("Passage:\n", 1)[1]
    if "question and answer pairs" in user:
        return f"Q1: What does the bridge cross?\nA1: The river.\n\nQ2: Who built it?\nA2: Masons. ({passage.strip()[-11:]})"
    return "Sure, here it is:\nRewritten: " + passage


def test_stage_through_an_openai_server(tmp_path):
    inputs = {"corpus": corpus(tmp_path / "corpus", [0, 2, 4, 1])}
    output = tmp_path / "out"
    output.mkdir()
    with FakeOpenAI(reply=server_reply, delay_s=0.05) as server:
        config = synth.Config(docs_per_part=3, generator={"kind": "openai", "base_url": server.url + "/v1",
                                                           "model": "served-model", "max_concurrency": 3})
        ctx = StepContext("synth")
        metrics = synth.run(config, inputs, output, ctx)
    docs = corpus_records(output)
    assert [d["id"] for d in docs] == ["doc0/wikipedia", "doc2/diverse_qa", "doc2/distill", "doc2/extract_knowledge",
                                       "doc2/knowledge_list", "doc3/wikipedia"]
    assert docs[0]["text"] == f"Rewritten: {TEXT} Document 0."
    assert docs[1]["text"] == ("Question: What does the bridge cross?\nAnswer: The river.\n\n"
                               "Question: Who built it?\nAnswer: Masons. (Document 2.)")
    assert {d["metadata"]["generator"] for d in docs} == {"served-model"}
    assert len(server.requests) == 6 and 1 < server.max_in_flight <= 3
    assert metrics["docs_out"] == 6 and metrics["docs_bad_json"] == 1 and metrics["docs_no_task_for_tier"] == 1
    assert metrics["parts"] == 2 and len(list((output / "documents").glob("*.jsonl.gz"))) == 2
    stats = json.loads((output / "stats.json").read_text())
    assert stats["counts"]["docs_out"] == 6 and stats["generator"] == "served-model"
    assert ctx.tracker.datasets[0]["name"] == "corpus"


def test_stage_with_a_local_model(tmp_path):
    model_dir = generator(tmp_path / "generator")
    inputs = {"corpus": corpus(tmp_path / "corpus", [0, 1, 2])}
    output = tmp_path / "out"
    output.mkdir()
    config = synth.Config(min_output_chars=0, generation={"max_new_tokens": 6},
                          generator={"model_dir": str(model_dir), "batch_size": 2})
    metrics = synth.run(config, inputs, output, StepContext("synth"))
    docs = corpus_records(output)
    # The tiny random model decodes greedily, so its output is fixed: both tier-0/1 documents are rewritten.
    assert metrics["docs_selected"] == 2 and metrics["docs_out"] == 2 and "docs_dropped" not in metrics
    assert [d["metadata"]["source_id"] for d in docs] == ["doc0", "doc1"]
    assert all(d["metadata"]["task"] == "wikipedia" and d["text"].strip() for d in docs)
    assert {d["metadata"]["generator"] for d in docs} == {"generator"}
    assert json.loads((output / "stats.json").read_text())["generator"] == "generator"


def test_stage_has_no_model_input(tmp_path):
    # The generator comes from the config only: an input the stage would ignore is refused, not dropped silently.
    with pytest.raises(InputError, match="model"):
        synth.run(synth.Config(), {"corpus": corpus(tmp_path / "corpus", [0]),
                                   "model": Artifact(tmp_path, {"fingerprint": "m" * 64})}, tmp_path / "out",
                  StepContext("synth"))


def test_stage_needs_a_corpus(tmp_path):
    with pytest.raises(InputError, match="'corpus'"):
        synth.run(synth.Config(), {}, tmp_path, StepContext("synth"))
    (tmp_path / "c" / "documents").mkdir(parents=True)
    with pytest.raises(InputError, match="no \\*.jsonl.gz"):
        synth.run(synth.Config(), {"corpus": Artifact(tmp_path / "c", {"fingerprint": "x"})}, tmp_path, StepContext("s"))
