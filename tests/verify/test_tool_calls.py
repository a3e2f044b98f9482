"""Tool-N1 rewards on correct, wrong-argument, wrong-type and malformed calls."""

from __future__ import annotations

import json

import pytest

from factory.verify.tool_calls import check_tool_calls

TRUTH = [{"name": "weather", "arguments": {"city": "Oslo", "days": 3}},
         {"name": "convert", "arguments": {"amount": 2.5, "to": "EUR", "round": True}}]


def reply(calls, think="I will call the tools.") -> str:
    body = calls if isinstance(calls, str) else json.dumps(calls)
    return f"<think>{think}</think>\n<tool_call>{body}</tool_call>"


@pytest.mark.parametrize(("text", "reward", "reason"), [
    (reply(TRUTH), 1, ""),
    (reply(list(reversed(TRUTH))), 1, ""),  # any order
    (reply([TRUTH[0]]), 0, "mismatch"),  # a call missing
    (reply(TRUTH + [TRUTH[0]]), 0, "mismatch"),  # an extra call
    (reply([TRUTH[0], {"name": "convert", "arguments": {"amount": 2.5, "to": "USD", "round": True}}]), 0, "mismatch"),
    (reply([TRUTH[0], {"name": "convert", "arguments": {"amount": 2.5, "to": "EUR"}}]), 0, "mismatch"),
    (reply([{"name": "weather", "arguments": {"city": "Oslo", "days": 3.0}}, TRUTH[1]]), 0, "mismatch"),  # int vs float
    (reply([{"name": "weather", "arguments": {"city": "Oslo", "days": "3"}}, TRUTH[1]]), 0, "mismatch"),  # int vs str
    (reply([TRUTH[0], {"name": "convert", "arguments": {"amount": 2.5, "to": "EUR", "round": 1}}]), 0, "mismatch"),  # bool vs int
    (reply([{"name": "Weather", "arguments": {"city": "Oslo", "days": 3}}, TRUTH[1]]), 0, "mismatch"),
    (reply("[{name: weather}]"), 0, "json"),
    (reply('[{"name": "weather"}]'), 0, "schema"),
    (reply('[{"name": "weather", "arguments": "city=Oslo"}]'), 0, "schema"),
    (json.dumps(TRUTH), 0, "format"),  # no tags
    ("<tool_call>" + json.dumps(TRUTH) + "</tool_call>", 0, "format"),  # no think block
    (reply(TRUTH) + " and then some text", 0, "format"),
    ("", 0, "format"),
])
def test_rewards(text, reward, reason):
    verdict = check_tool_calls(text, TRUTH)
    assert (verdict.reward, verdict.reason) == (reward, reason)


def test_a_single_object_is_one_call():
    assert check_tool_calls(reply(TRUTH[0]), [TRUTH[0]]).reward == 1
