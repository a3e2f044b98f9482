"""The conversations artifact's records: round trip, the reasoning switch checked, errors naming file and line."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from factory.artifacts import Conversations, check_layout
from factory.errors import InputError
from factory.chat.records import (
    Conversation,
    DataStats,
    Prompt,
    assistant_content,
    read_conversations,
    read_prompts,
    split_thinking,
    write_records,
    write_stats,
)


def conversation(reasoning="on", **update):
    content = assistant_content("\\boxed{5}", "2 + 3 = 5" if reasoning == "on" else None)
    data = {"id": f"a-{reasoning}", "task": "basic_arithmetic", "verifier": "math", "answer": "5",
            "reasoning": reasoning, "teacher": "procedural-solver",
            "messages": [{"role": "system", "content": f"detailed thinking {reasoning}"},
                         {"role": "user", "content": "What is 2 + 3?"},
                         {"role": "assistant", "content": content}]}
    return {**data, **update}


def test_round_trip_through_the_artifact_reader(tmp_path):
    convs = [Conversation.model_validate(conversation("on")), Conversation.model_validate(conversation("off"))]
    prompt = Prompt.model_validate({"id": "p", "task": "mc", "verifier": "choice", "answer": {"gold": "B", "options": ["x", "y"]},
                                    "messages": [{"role": "user", "content": "Pick"}]})
    assert write_records(tmp_path / "train.jsonl", convs) == 2
    write_records(tmp_path / "prompts.jsonl", [prompt])
    write_records(tmp_path / "heldout.jsonl", [])
    write_stats(tmp_path / "stats.json", DataStats(prompts=1, generated=3, kept=2, dropped={"wrong_answer": 1}))
    check_layout("conversations", tmp_path, "data")
    art = Conversations.of({"data": SimpleNamespace(path=tmp_path)}, "data")
    assert art.train() == convs
    assert art.prompts()[0].chat("off") == [{"role": "system", "content": "detailed thinking off"},
                                            {"role": "user", "content": "Pick"}]
    assert art.heldout() == [] and art.stats().dropped == {"wrong_answer": 1}
    assert split_thinking(art.train()[0].reply) == ("2 + 3 = 5", "\\boxed{5}")
    assert split_thinking(art.train()[1].reply) == (None, "\\boxed{5}")
    assert "reasoning" not in json.loads((tmp_path / "prompts.jsonl").read_text())  # None fields left out


def test_layout_names_the_missing_file(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(InputError, match="prompts.jsonl: missing; input 'data' must be a conversations artifact"):
        check_layout("conversations", tmp_path, "data")


@pytest.mark.parametrize("bad, message", [
    ("{not json", r"train.jsonl:2: not JSON"),
    (json.dumps(conversation("on", answer="")), r"train.jsonl:2: record 'a-on': answer|lacks its answer"),
    (json.dumps(conversation("off", messages=conversation("on")["messages"])), r"train.jsonl:2: .*needs the system turn"),
    (json.dumps(conversation("on", messages=[*conversation("on")["messages"][:2],
                                             {"role": "assistant", "content": "5"}])), r"train.jsonl:2: .*must hold a <think> block"),
    (json.dumps(conversation("on", verifier="choice", answer={"gold": "carbon", "options": ["a", "b"]})), "option letter"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, message):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(conversation("on")) + "\n" + bad + "\n")
    with pytest.raises(InputError, match=message):
        read_conversations(path)


def test_prompt_without_answer_is_named(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"id": "q1", "task": "t", "verifier": "math", "messages": [{"role": "user", "content": "?"}]}) + "\n")
    with pytest.raises(InputError, match=r"prompts.jsonl:1: record 'q1': lacks its answer"):
        read_prompts(path)
