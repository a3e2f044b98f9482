"""rephrase(): tier routing, chunking, post-processing (echo stripping, drops, QA layout), config checks."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from factory.errors import InputError, SpecError
from factory.generate import GenerationParams
from factory.stages.synth.prompts import available, load_prompt
from factory.stages.synth.config import HIGH_QUALITY_TASKS, Config, tiny
from factory.stages.synth.rephrase import chunk_text, clean_output, parse_qa, rephrase

TASKS = ("wikipedia", *HIGH_QUALITY_TASKS)
PREAMBLES = {task: load_prompt(task).preamble for task in TASKS}


def task_of(prompt) -> str:
    user = prompt[-1]["content"] if isinstance(prompt, list) else prompt
    return next(t for t, pre in PREAMBLES.items() if pre in user)


def passage_of(prompt) -> str:
    user = prompt[-1]["content"] if isinstance(prompt, list) else prompt
    return user.split("Passage:\n", 1)[1].strip()


def default_reply(task, passage, prompt):
    if task == "diverse_qa":
        return f"Question: what is it about?\nAnswer: {passage}"
    return f"{task} version of: {passage}"


class ScriptedGenerator:
    """A generator whose reply is a function of (task, passage); records every call."""

    model_id = "scripted-model"

    def __init__(self, reply=None):
        self.reply = reply or default_reply
        self.calls: list[tuple[list, GenerationParams]] = []

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        return [self.reply(task_of(p), passage_of(p), p) for p in prompts]


def doc(i, tier, text=None):
    meta = {} if tier is None else {"quality_tier": tier}
    return {"id": f"d{i}", "text": text or f"Document number {i} talks about rivers, bridges and old stone towns.",
            "metadata": meta}


def test_tiers_route_to_their_prompts():
    docs = [doc(0, 0), doc(1, 1), doc(2, 2), doc(3, 3), doc(4, 4), doc(5, None), {"text": "no id"}, doc(6, 4.0)]
    stats = Counter()
    gen = ScriptedGenerator()
    out = list(rephrase(docs, Config(min_output_chars=0), gen, stats))
    routed = [(d["metadata"]["source_id"], d["metadata"]["task"]) for d in out]
    assert routed == [("d0", "wikipedia"), ("d1", "wikipedia"),
                      *[("d3", t) for t in HIGH_QUALITY_TASKS], *[("d4", t) for t in HIGH_QUALITY_TASKS],
                      *[("d6", t) for t in HIGH_QUALITY_TASKS]]
    first = out[0]
    assert first["id"] == "d0/wikipedia"
    assert first["text"] == "wikipedia version of: " + docs[0]["text"]
    assert first["metadata"] | {"prompt_digest": None} == {
        "source_id": "d0", "task": "wikipedia", "quality_tier": 0, "generator": "scripted-model", "prompt": "wikipedia",
        "prompt_digest": None, "chunks": 1, "chunks_kept": 1}
    assert {d["metadata"]["quality_tier"] for d in out if d["metadata"]["source_id"] == "d6"} == {4}
    assert stats["docs_read"] == 8 and stats["docs_selected"] == 5
    assert stats["docs_no_task_for_tier"] == 1 and stats["docs_no_quality_tier"] == 1 and stats["docs_malformed"] == 1
    assert stats["docs_out"] == len(out) == 14
    # The prompts are chat conversations: the shared system message, then the task's instruction + passage.
    messages = gen.calls[0][0][0]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"].startswith(PREAMBLES["wikipedia"]) and messages[1]["content"].endswith(docs[0]["text"])


def test_custom_routing_seed_max_docs_and_plain_prompts():
    config = Config(tasks_by_tier={2: ("distill",)}, max_docs=2, use_chat=False, min_output_chars=0,
                    generation=GenerationParams(max_new_tokens=99, seed=42))
    gen = ScriptedGenerator()
    out = list(rephrase([doc(i, 2) for i in range(5)], config, gen))
    assert [d["id"] for d in out] == ["d0/distill", "d1/distill"]
    prompts, params = gen.calls[0]
    assert all(isinstance(p, str) for p in prompts)
    assert params.seed == 42 and params.max_new_tokens == 99
    # One seed, fingerprinted where it acts: there is no second, overriding `seed` field.
    with pytest.raises(ValueError, match="seed"):
        Config(seed=1)


def test_requests_are_batched_and_output_keeps_input_order():
    config = Config(tasks_by_tier={0: ("wikipedia",), 4: ("distill", "knowledge_list")}, request_batch=3,
                    min_output_chars=0)
    docs = [doc(i, 0 if i % 2 else 4) for i in range(7)]
    gen = ScriptedGenerator()
    out = list(rephrase(docs, config, gen))
    assert len(gen.calls) > 1 and all(len(prompts) <= 4 for prompts, _ in gen.calls)
    expected = [f"d{i}/{t}" for i in range(7) for t in (("wikipedia",) if i % 2 else ("distill", "knowledge_list"))]
    assert [d["id"] for d in out] == expected


def test_long_documents_are_chunked_and_joined():
    paragraphs = [f"Paragraph {i} explains how bridge number {i} was built of stone over the river." for i in range(10)]
    text = "\n\n".join(paragraphs)
    config = Config(tasks_by_tier={0: ("wikipedia",)}, chunk_size=200, min_output_chars=0)
    gen = ScriptedGenerator(lambda task, passage, prompt: f"<{passage}>")
    (out,) = rephrase([doc(0, 0, text)], config, gen)
    passages = [passage_of(p) for p in gen.calls[0][0]]
    assert len(passages) > 1 and all(len(p) <= 200 for p in passages)
    assert " ".join(passages).split() == text.split()  # nothing lost or repeated
    assert out["text"] == "\n\n".join(f"<{p}>" for p in passages)
    assert out["metadata"]["chunks"] == out["metadata"]["chunks_kept"] == len(passages)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcde .!?\n")), max_size=600), st.integers(16, 120))
def test_chunks_fit_the_budget_and_keep_every_word(text, budget):
    chunks = chunk_text(text, budget)
    assert all(len(c) <= budget for c in chunks)
    assert "".join("".join(chunks).split()) == "".join(text.split())


def test_chunk_by_tokens_needs_a_tokenizer():
    with pytest.raises(SpecError, match="chunk_unit"):
        list(rephrase([doc(0, 0)], Config(chunk_unit="tokens"), ScriptedGenerator()))

    class Counting(ScriptedGenerator):
        def count_tokens(self, text):
            return len(text.split())

    gen = Counting(lambda task, passage, prompt: passage)
    text = " ".join(f"w{i}" for i in range(50))
    list(rephrase([doc(0, 0, text)], Config(chunk_unit="tokens", chunk_size=16, min_output_chars=0), gen))
    assert [len(passage_of(p).split()) for p in gen.calls[0][0]] == [16, 16, 16, 2]


def test_post_processing_strips_echo_and_counts_drops():
    text = "Rivers carry water from the mountains to the sea, shaping valleys and plains along the way."

    def reply(task, passage, prompt):
        source = {"d0": prompt[-1]["content"] + "\n\nRivers shape valleys as they carry water to the sea over time.",
                  "d1": "Sure! Here is the rewritten passage:\n\nRivers move water from the mountains down to the sea.",
                  "d2": "   ", "d3": "Too short.",
                  "d4": PREAMBLES["wikipedia"] + "\n" + passage + "\nA river carries mountain water to the sea.",
                  "d5": PREAMBLES["wikipedia"] + "\n\nPassage:\n" + passage + "\n\nThe sea receives the water of many rivers."}
        return source[passage.split("|")[0]]

    docs = [doc(i, 0, f"d{i}|{text}") for i in range(6)]
    stats = Counter()
    out = list(rephrase(docs, Config(min_output_chars=30), ScriptedGenerator(reply), stats))
    assert [d["text"] for d in out] == ["Rivers shape valleys as they carry water to the sea over time.",
                                        "Rivers move water from the mountains down to the sea.",
                                        "A river carries mountain water to the sea.", "The sea receives the water of many rivers."]
    assert stats["outputs_dropped_empty"] == 1 and stats["outputs_dropped_too_short"] == 1
    assert stats["outputs_dropped_wikipedia"] == 2 and stats["docs_dropped"] == 2 and stats["outputs_kept"] == 4


def test_qa_outputs_get_a_clean_layout_and_pairless_ones_are_dropped():
    messy = ("Here are some questions:\n\n**Q1:** What carries water to the sea?\n**A1:** Rivers do.\n\n"
             "2. Question: Which is longer, the Nile or the Thames?\n   A) the Nile  B) the Thames\n"
             "Answer: The Nile,\nby far.\n\nQuestion 3: unanswered?\n")

    def reply(task, passage, prompt):
        return messy if passage.startswith("good") else "Rivers are nice. I have no questions about them at all."

    stats = Counter()
    config = Config(tasks_by_tier={4: ("diverse_qa",)}, min_output_chars=10)
    out = list(rephrase([doc(0, 4, "good text about rivers"), doc(1, 4, "bad text")], config,
                        ScriptedGenerator(reply), stats))
    assert [d["text"] for d in out] == [
        "Question: What carries water to the sea?\nAnswer: Rivers do.\n\n"
        "Question: Which is longer, the Nile or the Thames?\n   A) the Nile  B) the Thames\nAnswer: The Nile,\nby far."]
    assert stats["outputs_dropped_no_qa_pairs"] == 1 and stats["outputs_dropped_diverse_qa"] == 1


@pytest.mark.parametrize("text,pairs", [
    ("Question: a?\nAnswer: b", [("a?", "b")]),
    ("Q: a?\nA: b\nQ: c?\nA: d", [("a?", "b"), ("c?", "d")]),
    ("1. **Question:** a?\n**Answer:** b\n\n2. **Question:** c?\n**Answer:** d", [("a?", "b"), ("c?", "d")]),
    ("- Question 1) a?\n- Answer 1) b", [("a?", "b")]),
    ("Answer: orphan\nQuestion: a?\nAnswer: b\nAnswer: again", [("a?", "b\nAnswer: again")]),
    ("no pairs here", []),
])
def test_parse_qa_layouts(text, pairs):
    assert parse_qa(text) == pairs


def test_clean_output_strips_only_leading_echo():
    assert clean_output("INSTR\nDOC\nbody", ["INSTR"], "DOC") == "body"
    assert clean_output("Certainly, here's the text:\nbody", [], "x") == "body"
    assert clean_output("body mentions DOC later", ["INSTR"], "DOC") == "body mentions DOC later"
    assert clean_output("Here is why: rivers flow.", [], "x") == "Here is why: rivers flow."  # no newline: content


def test_prompts_are_files_with_one_placeholder():
    assert load_prompt("wikipedia").before_document.endswith("Passage:")
    assert not load_prompt("wikipedia").preamble.endswith("Passage:")
    assert set(TASKS) <= set(available())
    for task in TASKS:
        prompt = load_prompt(task)
        assert prompt.system and prompt.user.count("{document}") == 1
        assert prompt.messages("XYZ")[-1]["content"].endswith("XYZ")
    with pytest.raises(InputError, match="no prompt named 'poetry'"):
        load_prompt("poetry")


def test_custom_prompt_folder(tmp_path):
    (tmp_path / "shout.txt").write_text("Shout this:\n{document}\n")
    config = Config(prompt_dir=str(tmp_path), tasks_by_tier={0: ("shout",)}, min_output_chars=0)
    gen = ScriptedGenerator()
    seen = []

    def generate(prompts, params):
        seen.extend(prompts)
        return [p[-1]["content"].replace("quiet words", "QUIET WORDS") for p in prompts]

    gen.generate = generate
    (out,) = rephrase([doc(0, 0, "quiet words")], config, gen)
    assert seen == [[{"role": "user", "content": "Shout this:\nquiet words"}]]  # no system.txt: no system message
    assert out["text"] == "QUIET WORDS"  # the echoed instruction was stripped
    assert out["metadata"]["prompt"] == "shout"


@pytest.mark.parametrize("bad,message", [
    ({"tasks_by_tier": {7: ("wikipedia",)}}, "tiers must be 0-4"),
    ({"tasks_by_tier": {0: ("poetry",)}}, "unknown task"),
    ({"generator": {"kind": "openai"}}, "needs base_url and model"),
    ({"chunk_size": 3}, "chunk_size"),
])
def test_config_rejects_bad_fields(bad, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        Config(**bad)


def test_tiny_preset_is_a_valid_config():
    config = tiny()
    assert config.max_docs == 16 and config.generation.max_new_tokens == 64
    assert config.tasks() == ["wikipedia", *HIGH_QUALITY_TASKS]


def test_result_fields_leave_out_runtime_knobs():
    fields = Config().result_fields()
    assert "request_batch" not in fields and "docs_per_part" not in fields
    assert "device" not in fields["generator"] and fields["generator"]["kind"] == "transformers"
    assert Config(request_batch=8, generator={"device": "cuda"}).result_fields() == fields
    served = {"kind": "openai", "base_url": "http://vllm:8000", "model": "m"}
    assert Config(generator={**served, "max_concurrency": 64}).result_fields() == Config(generator=served).result_fields()
    # a local model seeds its sampling per batch (tests/generate/test_settings.py): the batch size is part of the result
    assert Config(generator={"batch_size": 32}).result_fields() != fields
