"""Tool-call rewards after Tool-N1: the reply's format and every call must be right, or the reward is 0.

    reply = '<think>I need the weather.</think><tool_call>[{"name": "weather", "arguments": {"city": "Oslo"}}]</tool_call>'
    check_tool_calls(reply, [{"name": "weather", "arguments": {"city": "Oslo"}}])   # ToolCallVerdict(reward=1, ...)

The format is `<think>...</think>` followed by `<tool_call>[{"name": ..., "arguments": {...}}, ...]</tool_call>`
(a JSON list; a single object is read as a list of one). The reward is 1 only when the calls equal the ground
truth's as a multiset (any order) with names and arguments equal as JSON with strict types: `1`, `1.0`,
`true` and `"1"` are four different values. Anything else (no think block, no tool_call block, text that is
not JSON, a call without a name or with non-object arguments, a missing, extra or different call) is 0, with
the reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_FORMAT = re.compile(r"^\s*<think>(.*?)</think>\s*<tool_call>(.*?)</tool_call>\s*$", re.DOTALL)


class ToolCall(BaseModel):
    """One call in the format `check_tool_calls` reads: a tool's name and its arguments (task files' expected
    calls, conversation records' assistant calls)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="The tool's name.")
    arguments: dict[str, Any] = Field(description="The call's arguments as a JSON object.")


class ToolCallVerdict(BaseModel):
    """The reward of one reply and why."""

    model_config = ConfigDict(frozen=True)

    reward: int = Field(description="1 when format and every call are right, else 0.")
    reason: str = Field("", description="format, json, schema or mismatch when the reward is 0.")
    calls: list[dict[str, Any]] | None = Field(None, description="The calls read from the reply, when readable.")


def _typed(value: Any) -> Any:
    """A hashable form of a JSON value in which values of different JSON/Python types never compare equal."""
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, _typed(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", tuple(_typed(v) for v in value))
    return (type(value).__name__, value)  # bool, int, float, str, NoneType stay apart


def parse_tool_calls(reply: str) -> tuple[list[dict[str, Any]] | None, str]:
    """(calls, "") from a well-formed reply, or (None, reason) with reason format, json or schema."""
    match = _FORMAT.match(reply or "")
    if match is None:
        return None, "format"
    try:
        calls = json.loads(match.group(2))
    except ValueError:
        return None, "json"
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list) or not all(
        isinstance(c, dict) and set(c) == {"name", "arguments"} and isinstance(c["name"], str)
        and isinstance(c["arguments"], dict) for c in calls
    ):
        return None, "schema"
    return calls, ""


def check_tool_calls(reply: str, truth: Sequence[dict[str, Any]]) -> ToolCallVerdict:
    """Reward 1 iff `reply` is well-formed and its calls equal `truth` in any order, types strict."""
    calls, reason = parse_tool_calls(reply)
    if calls is None:
        return ToolCallVerdict(reward=0, reason=reason)
    ok = Counter(_typed(c) for c in calls) == Counter(_typed(dict(c)) for c in truth)
    return ToolCallVerdict(reward=int(ok), reason="" if ok else "mismatch", calls=calls)
