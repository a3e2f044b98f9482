"""The post-training data stage run for real: the procedural solver end to end, an in-process model teacher,
tool-integrated reasoning whose code runs in the real bubblewrap sandbox, user JSONL prompt sets, and bad input.

The scripted teacher below is a stand-in generator (no model writes deterministic code blocks and answers
offline): it exists to inject faults and known replies into the real loop, verifiers and sandbox.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from factory.artifacts import Conversations, check_layout
from factory.errors import InputError, SpecError
from factory.generate.params import cut_at_stop
from factory.stages.posttrain_data import Config, run
from factory.chat.records import PROCEDURAL_TEACHER, read_conversations, read_prompts, read_stats, split_thinking
from factory.stage import Artifact, NullTracker, StepContext
from factory.verify.math_answer import MathVerifier
from tests.builders import generator

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (tests/setup.sh installs it)")


def ctx() -> StepContext:
    return StepContext("posttrain_data", tracker=NullTracker())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------- the procedural solver

def test_procedural_solver_end_to_end(tmp_path):
    # reasoning-gym seeds item i with seed + i, so held-out seed 4 repeats training seed 3's items 1-6: the
    # stage removes those 6 from training (overlap_removed), so held-out prompts are never trained on
    config = Config(procedural=[
        {"generator": "basic_arithmetic", "size": 12, "seed": 3, "heldout_size": 6, "heldout_seed": 4,
         "params": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1, "operators": ["+", "-"]}},
        # held-out parameters training never sees: larger numbers
        {"generator": "gcd", "size": 8, "seed": 0, "params": {"max_value": 100},
         "heldout_size": 4, "heldout_params": {"min_value": 100, "max_value": 1000}},
        # seed 5 holds a degenerate item ("0 = 0", answer 83): the solver fails on it and says so
        {"generator": "simple_equations", "size": 10, "seed": 5},
    ])
    c = ctx()
    metrics = run(config, {}, tmp_path, c)
    check_layout("conversations", tmp_path, "data")
    art = Conversations(tmp_path, "data")
    train, prompts, heldout, stats = art.train(), art.prompts(), art.heldout(), art.stats()

    assert stats.sets["basic_arithmetic"]["overlap_removed"] == 6 and stats.sets["gcd"]["overlap_removed"] == 0
    assert (stats.prompts, stats.heldout, stats.generated) == (24, 10, 48)
    assert stats.dropped == {"solver_failed": 2}  # the degenerate equation, in both modes; every trace verifies
    assert stats.kept == len(train) == 46 == stats.generated - 2
    assert stats.kept_by_reasoning == {"off": 23, "on": 23}
    assert stats.kept_by_teacher == {PROCEDURAL_TEACHER: 46} and stats.teachers == [PROCEDURAL_TEACHER]
    assert {c.teacher for c in train} == {PROCEDURAL_TEACHER}
    assert stats.sets["gcd"]["kept"] == 16 and stats.sets["simple_equations"]["kept"] == 18
    assert stats.sets["basic_arithmetic"]["heldout"] == 6
    assert metrics["kept"] == 46.0 and metrics["dropped_solver_failed"] == 2.0
    assert metrics["kept_on"] == 23.0 and c.tracker.metrics == []  # the executor logs what a stage returns, once
    assert c.tracker.artifacts == [tmp_path / "stats.json"]
    assert {d["name"] for d in c.tracker.datasets} == {"prompts/basic_arithmetic", "prompts/gcd", "prompts/simple_equations"}

    # both modes: the switch in the system turn, a think block exactly when it is on
    for conv in train:
        thinking, final = split_thinking(conv.reply)
        assert conv.messages[0].content == f"detailed thinking {conv.reasoning}"
        assert (thinking is not None) == (conv.reasoning == "on") and "\\boxed{" in final
    on = next(c for c in train if c.reasoning == "on" and c.task == "gcd")
    numbers = on.meta["metadata"]["numbers"]
    assert f"gcd({numbers[0]}, {numbers[1]}) = {on.answer}" in on.reply  # Euclid's steps, ending in the answer

    # every kept record verifies again, checked here independently of the stage
    with MathVerifier(workers=1) as verifier:
        verdicts = verifier.check_many([(c.answer, split_thinking(c.reply)[1]) for c in train])
    assert all(v.correct for v in verdicts)

    # held-out prompts: other seeds and parameters, none of their questions in training
    assert len(prompts) == 24 and len(heldout) == 10
    degenerate = next(p for p in prompts if p.meta["metadata"].get("equation") == "0 = 0")
    assert not [c for c in train if c.messages[1].content == degenerate.question]
    assert {p.meta["seed"] for p in heldout if p.task == "basic_arithmetic"} == {4}
    assert all(p.meta["params"]["min_value"] == 100 for p in heldout if p.task == "gcd")
    trained = {p.question for p in prompts} | {c.messages[1].content for c in train}
    assert not trained & {p.question for p in heldout}
    assert all(p.reasoning is None and [m.role for m in p.messages] == ["user"] for p in prompts)


# ------------------------------------------------------------------------------ a real in-process model

def test_tiny_random_model_teacher_keeps_nothing_and_fails_cleanly(tmp_path):
    checkpoint = tmp_path / "teacher"
    generator(checkpoint / "model", "tiny")  # the tiny preset, randomly initialised
    config = Config(procedural=[{"generator": "basic_arithmetic", "size": 3, "params": {"max_digits": 1}}],
                    teacher={"kind": "transformers"}, generation={"max_new_tokens": 6})
    assert config.required_inputs() == {"teacher"}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError) as e:
        run(config, {"teacher": Artifact(checkpoint, {"fingerprint": "f", "uri": "store/pretrain/0123abcd"})}, out, ctx())
    message = str(e.value)
    assert "prompt set 'basic_arithmetic'" in message and "0 verified solutions of 3 prompts x 2 modes" in message
    assert "teacher pretrain/0123abcd" in message and "nothing was published" in message  # named by its artifact
    assert list(out.iterdir()) == []  # nothing half-written


# ------------------------------------------------------------------------- scripted stand-in generator

class ScriptedTeacher:
    """A stand-in for a model behind the generator interface: replies from `script(question, mode, turns)`,
    where turns are the conversation's later messages (code output fed back). Stop strings apply as in
    the real generators."""

    model_id = "scripted-teacher"

    def __init__(self, script):
        self.script = script
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append([list(p) for p in prompts])
        out = []
        for messages in prompts:
            mode = messages[0]["content"].rsplit(" ", 1)[-1]
            out.append(cut_at_stop(self.script(messages[1]["content"], mode, messages[2:]), params.stop))
        return out


def think(mode: str, steps: str, final: str) -> str:
    return f"<think>\n{steps}\n</think>\n\n{final}" if mode == "on" else final


@needs_bwrap
def test_tool_integrated_reasoning_runs_code_in_the_sandbox(tmp_path):
    prompts = write_jsonl(tmp_path / "tir.jsonl", [
        {"id": "mul", "prompt": "What is 37 * 41?", "answer": "1517"},
        {"id": "crash", "prompt": "What is 2 ** 10?", "answer": "1024"},
        {"id": "loop", "prompt": "What is 6 * 7?", "answer": "42"},
    ])

    def script(question, mode, turns):
        opened = "<think>\n" if mode == "on" and not turns else ""
        if "37 * 41" in question:
            if not turns:  # a hallucinated output block after the code must be cut by the stop string
                return opened + "I will compute it.\n```python\nimport os\nprint(37 * 41, os.getcwd())\n```\n```output\n999\n```"
            value = re.search(r"(\d+) /sandbox", turns[-1]["content"]).group(1)  # what the sandbox printed
            return ("It printed the product.\n</think>\n\n" if mode == "on" else "") + f"The answer is \\boxed{{{value}}}."
        if "2 ** 10" in question:
            if not turns:
                return opened + "```python\nprint(2 ** 10 / 0)\n```"
            assert "ZeroDivisionError" in turns[-1]["content"]
            return ("The code failed.\n</think>\n\n" if mode == "on" else "") + "The answer is \\boxed{0}."
        # always writes more code: stopped after max_rounds blocks, then its reply stands as written
        return (opened if not turns else "") + f"```python\nprint({len(turns)})\n```"

    teacher = ScriptedTeacher(script)
    config = Config(procedural=[], prompts=[str(prompts)], teacher={"kind": "openai", "base_url": "http://unused", "model": "m"},
                    tir={"max_rounds": 2, "sandbox": {"timeout_s": 20}}, request_batch=2)  # two chunks of prompts
    run(config, {}, tmp_path / "out", ctx(), generator=teacher)
    train = read_conversations(tmp_path / "out" / "train.jsonl")
    stats = read_stats(tmp_path / "out" / "stats.json")

    assert sorted((c.meta["set"], c.reasoning) for c in train) == [("tir", "off"), ("tir", "on")]
    for conv in train:
        assert conv.id.startswith("mul-") and conv.teacher == "scripted-teacher" and conv.meta["tir_rounds"] == 1
        assert "```output\n1517 /sandbox\n```" in conv.reply and "999" not in conv.reply  # real output, not the invented one
        assert "Python" in conv.messages[1].content  # the prompt the teacher saw offered code execution
    assert stats.tir == {"tir_code_errors": 2, "tir_code_runs": 2 + 2 + 2 * 2, "tir_solutions": 6}
    # the failing code's error was fed back, the wrong answer dropped; the endless coder has no boxed answer
    # with `on` the endless coder never closes its think block; with `off` math-verify reads a printed number
    assert stats.dropped == {"no_think_block": 1, "wrong_answer": 3}
    # every later turn of a conversation carried the sandbox's output back to the teacher
    fed = [m["content"] for call in teacher.calls for conv in call for m in conv[2:] if m["role"] == "user"]
    assert fed and all(f.startswith("```output\n") for f in fed)


def test_user_jsonl_prompt_set_with_every_verifier(tmp_path):
    tools = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    train = write_jsonl(tmp_path / "mine.jsonl", [
        {"id": "m1", "prompt": "What is 17 * 3?", "answer": 51},
        {"id": "m2", "prompt": "What is 10 - 4?", "answer": "6"},
        {"id": "c1", "prompt": "Which is a prime?", "options": ["4", "6", "7", "9"], "answer": "c", "verifier": "choice"},
        {"id": "o1", "prompt": "Which gas do plants take in?", "answer": ["carbon dioxide", "CO2"], "verifier": "choice"},
        {"id": "t1", "prompt": "Weather in Oslo?", "tools": tools, "verifier": "tool",
         "answer": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"id": "k1", "prompt": "def add(a, b):\n", "answer": "assert add(2, 3) == 5", "verifier": "code"},
        {"id": "dup", "prompt": "What is 1 + 1?", "answer": "2"},
    ])
    held = write_jsonl(tmp_path / "held.jsonl", [{"id": "h1", "prompt": "What is 1 + 1?", "answer": "2"}])

    def script(question, mode, turns):
        if "17 * 3" in question:
            return think(mode, "17 * 3 = 51", "\\boxed{51}")
        if "10 - 4" in question:
            return think(mode, "10 - 4 = 5", "\\boxed{5}")  # wrong
        if "prime" in question:
            return think(mode, "7 has no divisors but 1 and 7.", "\\boxed{C}")
        if "plants" in question:
            return "\\boxed{carbon dioxide}"  # no think block even when it is on
        if "Oslo" in question:
            return think(mode, "The weather tool takes a city.", '<tool_call>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</tool_call>')
        if "def add" in question:
            body = "def add(a, b):\n    return a + b" if mode == "on" else "def add(a, b):\n    return a - b"
            return think(mode, "Add them.", f"```python\n{body}\n```")
        raise AssertionError(question)

    config = Config(procedural=[], prompts=[str(train)], heldout_prompts=[str(held)],
                    teacher={"kind": "openai", "base_url": "http://unused", "model": "m"}, tir={"enabled": False})
    run(config, {}, tmp_path / "out", ctx(), generator=ScriptedTeacher(script))
    out = tmp_path / "out"
    kept = {(c.id.rsplit("-", 2)[0], c.reasoning) for c in read_conversations(out / "train.jsonl")}
    assert kept == {("m1", "on"), ("m1", "off"), ("c1", "on"), ("c1", "off"), ("o1", "off"),
                    ("t1", "on"), ("t1", "off"), ("k1", "on")}
    stats = read_stats(out / "stats.json")
    assert stats.dropped == {"no_think_block": 1, "tests_failed": 1, "wrong_answer": 2}
    assert stats.prompts == 6 and stats.sets["mine"]["overlap_removed"] == 1  # "dup" equals a held-out prompt
    assert [p.id for p in read_prompts(out / "heldout.jsonl")] == ["h1"]
    prompts = {p.id: p for p in read_prompts(out / "prompts.jsonl")}
    assert prompts["m1"].answer == "51" and prompts["c1"].answer == {"gold": "C", "options": ["4", "6", "7", "9"]}
    assert "(C) 7" in prompts["c1"].question and "multiple-choice" in prompts["c1"].question  # CrossThink's template
    assert prompts["o1"].meta["template"] == "open_ended" and "(A)" not in prompts["o1"].question
    tool = next(c for c in read_conversations(out / "train.jsonl") if c.id == "t1-on-0")
    assert tool.messages[-1].tool_calls[0].arguments == {"city": "Oslo"}  # calls as tool_calls, for the chat template
    assert tool.reply.endswith('<tool_call>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</tool_call>')


def test_openai_endpoint_teacher_over_http(tmp_path):
    from tests.stages.synth.fake_openai import FakeOpenAI  # a real HTTP server speaking the OpenAI API, stand-in replies

    prompts = write_jsonl(tmp_path / "quiz.jsonl", [
        {"id": "p1", "prompt": "Which is a prime?", "options": ["4", "6", "7"], "answer": "C", "verifier": "choice"},
        {"id": "p2", "prompt": "Which is even?", "options": ["3", "5", "8"], "answer": "C", "verifier": "choice"},
    ])
    # a stand-in teacher that never opens a think block (its `on` replies are dropped) and knows only the prime
    with FakeOpenAI(reply=lambda text: "\\boxed{C}" if "prime" in text else "\\boxed{A}") as server:
        config = Config(procedural=[], prompts=[str(prompts)], teacher={"kind": "openai", "base_url": server.url, "model": "teacher-m"})
        run(config, {}, tmp_path / "out", ctx())
    systems = sorted({body["messages"][0]["content"] for _, body in server.requests})
    assert systems == ["detailed thinking off", "detailed thinking on"] and len(server.requests) == 4
    train = read_conversations(tmp_path / "out" / "train.jsonl")
    assert [(c.id, c.teacher) for c in train] == [("p1-off-0", "teacher-m")]
    assert read_stats(tmp_path / "out" / "stats.json").dropped == {"no_think_block": 2, "wrong_answer": 1}


# ------------------------------------------------------------------------------------------ bad input

def test_prompt_set_without_answers_fails_naming_the_set(tmp_path):
    bad = write_jsonl(tmp_path / "no_answers.jsonl", [{"prompt": "What is 2 + 2?"}, {"prompt": "And 3 + 3?", "answer": ""}])
    with pytest.raises(InputError, match=r"prompt set .*no_answers.jsonl: 2 of 2 prompts have no answer \(first at line 1\)"):
        run(Config(procedural=[], prompts=[str(bad)]), {}, tmp_path / "out", ctx())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, message", [
    ("{oops", r"no_json.jsonl:2: not JSON"),
    (json.dumps({"prompt": "Pick", "options": ["a", "b"], "answer": "carbon", "verifier": "choice"}), r"no_json.jsonl:2: answer: .*option letter"),
    (json.dumps({"question": "typo?", "answer": "1"}), r"no_json.jsonl:2: prompt: Field required"),
])
def test_malformed_prompt_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "no_json.jsonl"
    path.write_text(json.dumps({"prompt": "What is 1 + 1?", "answer": "2"}) + "\n" + line + "\n")
    with pytest.raises(InputError, match=message):
        run(Config(procedural=[], prompts=[str(path)]), {}, tmp_path / "out", ctx())


def test_empty_verified_set_names_the_set(tmp_path):
    # the procedural solver has no trace for knowledge questions: the multiple-choice set ends empty
    config = Config(procedural=[], task_sets=[{"file": "multiple_choice", "size": 2}])
    with pytest.raises(InputError, match=r"prompt set 'multiple_choice' \(task-file:multiple_choice\): 0 verified .*dropped: no_solver 8"):
        run(config, {}, tmp_path, ctx())
    assert list(tmp_path.iterdir()) == []


def test_config_errors_name_the_field():
    from factory.stages.posttrain_data.prompt_sets import prompt_sets

    with pytest.raises(SpecError, match=r"procedural\[0\]\.generator: reasoning-gym has no generator 'gdc'"):
        prompt_sets(Config(procedural=[{"generator": "gdc"}]))
    with pytest.raises(SpecError, match=r"procedural\[0\]\.params: generator 'gcd' rejects"):
        prompt_sets(Config(procedural=[{"generator": "gcd", "params": {"digits": 3}}]))
    with pytest.raises(ValueError, match="heldout_seed: must differ from seed"):
        Config(procedural=[{"generator": "gcd", "seed": 1, "heldout_size": 2, "heldout_seed": 1}])
    with pytest.raises(ValueError, match="needs generation.temperature > 0"):
        Config(teacher={"kind": "openai", "base_url": "http://x", "model": "m"}, samples=4)
    assert Config().required_tools() == {}  # the procedural default needs no sandbox (README's first command)


def test_a_set_entirely_held_out_fails_naming_it(tmp_path):
    mine = write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "What is 1 + 1?", "answer": "2"}])
    held = write_jsonl(tmp_path / "held.jsonl", [{"prompt": "What is 1 + 1?", "answer": "2"}])
    with pytest.raises(InputError, match=r"prompt set 'mine' .*: 0 verified solutions of 0 prompts x 2 modes "
                                         r"\(1 prompts removed as held-out duplicates\)"):
        run(Config(procedural=[], prompts=[str(mine)], heldout_prompts=[str(held)]), {}, tmp_path / "out", ctx())
