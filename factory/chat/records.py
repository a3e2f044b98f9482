"""The records of a "conversations" artifact (the post-training data stage writes it; SFT, RL and preference read it).

    from factory.chat.records import read_conversations, read_prompts

    for conv in read_conversations(folder / "train.jsonl"):      # verified SFT conversations
        conv.messages[-1].content                                 # "<think>\\n...\\n</think>\\n\\nFINAL" or "FINAL"
    for prompt in read_prompts(folder / "heldout.jsonl"):        # prompts with references, no assistant turn
        prompt.chat("on")                                         # [system "detailed thinking on", user]

A conversations artifact is a folder of four files:

- `train.jsonl`: `Conversation`s, one per line: verified solutions in both reasoning modes.
- `prompts.jsonl`: `Prompt`s: every training prompt with its reference (RL and preference pairs sample these).
- `heldout.jsonl`: `Prompt`s from seeds and parameters the training files never hold (accuracy checks).
- `stats.json`: `DataStats`: counts of prompts, generated, kept, and dropped per reason.

The `answer` of a record is the reference in the form its `verifier` takes:

- `math`: a string, the final answer (`"42"`, `"\\\\frac{1}{2}"`), checked with math-verify against the reply's
  last `\\\\boxed{}` (`factory.verify.MathVerifier`).
- `choice`: `{"gold": "B", "options": ["...", ...]}` for a multiple-choice question (letter checked with
  `check_choice`), or `{"gold": "carbon dioxide", "options": []}` (gold may be a list of accepted answers) for an
  open-ended one (checked with `check_short_answer`): CrossThink's two templates.
- `tool`: the ground-truth calls `[{"name": ..., "arguments": {...}}]`, checked with `check_tool_calls` on
  `<think>...</think><tool_call>[...]</tool_call>`. In train.jsonl the assistant turn's `content` holds the
  text before the calls (the think block, or nothing with `off`) and `tool_calls` the calls, which the chat
  template writes after the content; `Conversation.reply` joins them again.
- `code`: a string of Python test code (asserts) run after the solution in the sandbox (`run_tests`).

Writers are atomic (a temp file beside the target, then a rename); readers raise one `InputError` naming the
file and line of the first malformed record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.errors import InputError
from factory.jsonl import read_models, validation_reason, write_objects, write_text_atomic
from factory.verify.tool_calls import ToolCall

TRAIN = "train.jsonl"
PROMPTS = "prompts.jsonl"
HELDOUT = "heldout.jsonl"
STATS = "stats.json"
FILES = (TRAIN, PROMPTS, HELDOUT, STATS)

PROCEDURAL_TEACHER = "procedural-solver"  # the offline teacher's name in every record and in stats.json

Reasoning = Literal["on", "off"]
VerifierName = Literal["math", "code", "tool", "choice"]
SYSTEM_PROMPTS: dict[str, str] = {"on": "detailed thinking on", "off": "detailed thinking off"}

_THINK = re.compile(r"^\s*<think>\n?(.*?)\n?</think>\s*(.*)$", re.DOTALL)


def system_prompt(reasoning: Reasoning) -> str:
    """The Llama-Nemotron reasoning switch: `detailed thinking on` or `detailed thinking off`."""
    return SYSTEM_PROMPTS[reasoning]


def assistant_content(final: str, thinking: str | None = None) -> str:
    """An assistant turn: `<think>\\nTHINKING\\n</think>\\n\\nFINAL` when thinking is given, else FINAL alone."""
    if thinking is None:
        return final.strip()
    return f"<think>\n{thinking.strip()}\n</think>\n\n{final.strip()}"


def split_thinking(content: str) -> tuple[str | None, str]:
    """(thinking, final) of an assistant turn; thinking is None when it holds no `<think>` block."""
    match = _THINK.match(content)
    if match is None:
        return None, content.strip()
    return match.group(1).strip(), match.group(2).strip()


class Message(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant", "tool"] = Field(description="Who speaks.")
    content: str = Field(description="The text of the turn.")
    tool_calls: list[ToolCall] | None = Field(None, description="Calls an assistant turn makes, if any.")


def _check_answer(verifier: str, answer: Any) -> None:
    """Raise ValueError when `answer` is missing or not in the form `verifier` takes (see the module docstring)."""
    if answer is None or answer == "" or answer == [] or answer == {}:
        raise ValueError(f"lacks its answer (the reference a {verifier!r} verifier checks against)")
    if verifier == "math" and not isinstance(answer, str):
        raise ValueError("a math answer is a string such as \"42\"")
    if verifier == "code" and not isinstance(answer, str):
        raise ValueError("a code answer is a string of Python test code")
    if verifier == "tool":
        if not isinstance(answer, list):
            raise ValueError("a tool answer is a list of calls [{\"name\": ..., \"arguments\": {...}}]")
        for call in answer:
            ToolCall.model_validate(call)
    if verifier == "choice":
        if not isinstance(answer, dict) or set(answer) != {"gold", "options"}:
            raise ValueError("a choice answer is {\"gold\": ..., \"options\": [...]} (options [] when open-ended)")
        gold, options = answer["gold"], answer["options"]
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ValueError("a choice answer's options are a list of strings")
        if options and not (isinstance(gold, str) and len(gold.strip()) == 1 and gold.strip().isalpha()):
            raise ValueError("a multiple-choice answer's gold is the option letter (\"A\", \"B\", ...)")
        if not gold:
            raise ValueError(f"lacks its answer (the reference a {verifier!r} verifier checks against)")


class Prompt(BaseModel):
    """A prompt with its reference answer (prompts.jsonl, heldout.jsonl): messages are [system?, user]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, description="Unique id within the artifact.")
    task: str = Field(min_length=1, description="The task it comes from, e.g. basic_arithmetic.")
    verifier: VerifierName = Field(description="Which verifier checks a reply: math, code, tool or choice.")
    answer: Any = Field(None, description="The reference, in the form the verifier takes (see the module docstring).")
    messages: list[Message] = Field(min_length=1, description="The chat so far: an optional system turn, then the user turn.")
    reasoning: Reasoning | None = Field(None, description="The reasoning mode of a conversation; None for a bare prompt.")
    teacher: str | None = Field(None, description="Who wrote the assistant turn (a model, or procedural-solver).")
    meta: dict[str, Any] = Field(default_factory=dict, description="Where it came from: generator, seed, parameters.")

    @model_validator(mode="after")
    def _checked(self):
        _check_answer(self.verifier, self.answer)
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages hold no user turn")
        return self

    @property
    def question(self) -> str:
        """The (last) user turn's text."""
        return next(m.content for m in reversed(self.messages) if m.role == "user")

    def chat(self, reasoning: Reasoning) -> list[dict[str, Any]]:
        """The prompt as chat messages with the system turn for `reasoning` (what a generator is asked)."""
        turns = [m.model_dump(exclude_none=True) for m in self.messages if m.role != "system" and m.role != "assistant"]
        return [{"role": "system", "content": system_prompt(reasoning)}, *turns]


class Conversation(Prompt):
    """A verified SFT conversation (train.jsonl): [system, user, ..., assistant], mode and teacher named."""

    reasoning: Reasoning = Field(description="on: the assistant turn holds a <think> block; off: it holds none.")
    teacher: str = Field(min_length=1, description="Who wrote the assistant turn (a model, or procedural-solver).")

    @model_validator(mode="after")
    def _conversation(self):
        if self.messages[-1].role != "assistant":
            raise ValueError("a conversation ends with an assistant turn")
        system = [m.content for m in self.messages if m.role == "system"]
        if system and system[0] != system_prompt(self.reasoning):
            raise ValueError(f"reasoning {self.reasoning!r} needs the system turn {system_prompt(self.reasoning)!r}, "
                             f"got {system[0]!r}")
        thinking, _ = split_thinking(self.messages[-1].content)
        if (thinking is None) == (self.reasoning == "on"):
            raise ValueError(f"reasoning {self.reasoning!r}: the assistant turn must "
                             f"{'hold' if self.reasoning == 'on' else 'not hold'} a <think> block")
        return self

    @property
    def reply(self) -> str:
        """The assistant turn as one text, its tool calls (if any) written after the content in the evaluation
        format `<tool_call>[...]</tool_call>` (what `factory.verify.check_tool_calls` reads)."""
        last = self.messages[-1]
        if not last.tool_calls:
            return last.content
        calls = json.dumps([c.model_dump() for c in last.tool_calls])
        return f"{last.content}<tool_call>{calls}</tool_call>"


class DataStats(BaseModel):
    """stats.json: what the data stage generated, kept and dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompts: int = Field(description="Training prompts (prompts.jsonl).")
    heldout: int = Field(0, description="Held-out prompts (heldout.jsonl).")
    generated: int = Field(description="Candidate solutions asked for (prompts x modes x samples): kept + sum(dropped).")
    kept: int = Field(description="Solutions the verifier accepted (train.jsonl, beside any budget-control copies).")
    dropped: dict[str, int] = Field(default_factory=dict, description="Dropped solutions per reason.")
    kept_by_teacher: dict[str, int] = Field(default_factory=dict, description="Kept solutions per teacher.")
    kept_by_task: dict[str, int] = Field(default_factory=dict, description="Kept solutions per task.")
    kept_by_reasoning: dict[str, int] = Field(default_factory=dict, description="Kept solutions per reasoning mode.")
    teachers: list[str] = Field(default_factory=list, description="Every teacher that wrote solutions.")
    sets: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per prompt set: source, prompts, heldout, kept.")
    tir: dict[str, int] = Field(default_factory=dict, description="Tool-integrated reasoning: code runs, errors, solutions using code.")
    budget_control: dict[str, int] = Field(default_factory=dict, description="Kept mode-on solutions also written cut at a "
                                           "thinking budget: drawn, written, uncut (every budget fits), budget_N per budget.")


def read_prompts(path: str | Path) -> list[Prompt]:
    """prompts.jsonl or heldout.jsonl."""
    return read_models(path, Prompt)


def read_conversations(path: str | Path) -> list[Conversation]:
    """train.jsonl."""
    return read_models(path, Conversation)


def read_stats(path: str | Path) -> DataStats:
    """stats.json."""
    path = Path(path)
    try:
        return DataStats.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: not readable ({e})") from None
    except ValidationError as e:
        raise InputError(f"{path}: {validation_reason(e)}") from None


def write_records(path: str | Path, records: Iterable[BaseModel]) -> int:
    """Write records as JSONL atomically (None fields left out); returns how many."""
    return write_objects(path, records)


def write_stats(path: str | Path, stats: DataStats) -> None:
    """Write stats.json atomically."""
    write_text_atomic(Path(path), stats.model_dump_json(indent=2) + "\n")
