"""What every text generator shares: a prompt, the sampling parameters and the `Generator` protocol.

A prompt is either a chat conversation (a list of {"role", "content"} messages) or a plain string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Message = dict[str, str]
Prompt = Union[str, list[Message]]

__all__ = ["GenerationParams", "Generator", "Message", "Prompt", "close_thinking", "cut_at_stop", "flatten_chat"]


class GenerationParams(BaseModel):
    """How to sample a completion; the same meaning for every generator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(512, ge=1, description="Most tokens generated per prompt.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature; 0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (used only when sampling).")
    seed: int = Field(0, description="Random seed of sampling (local model: torch seed; endpoint: request seed).")
    stop: tuple[str, ...] = Field((), description="Strings that end a completion; the stop string is not kept.")
    reasoning: Literal["on", "off"] | None = Field(
        None, description="Chat prompts are rendered with the chat template's reasoning switch set to this "
        "(`enable_thinking`), and a reply keeps its think block and ends at the template's end of turn; None: the "
        "template's own default, and special tokens are dropped from the reply.")
    thinking_budget: int | None = Field(
        None, ge=0, description="Most tokens of thinking (counted from the reply's first token, its opening marker "
        "included when the model writes it): a reply still inside its think block after this many tokens is cut, "
        "`bridge` and the end-of-thinking marker are appended, and the model answers within `answer_budget`; None: no "
        "budget (max_new_tokens bounds the whole reply).")
    answer_budget: int | None = Field(
        None, ge=1, description="With a thinking budget: most tokens of the answer after the think block "
        "(None: max_new_tokens).")
    bridge: str = Field("", description="With a thinking budget: text written before the end-of-thinking marker of a "
                        "cut think block (e.g. 'Time is up; the answer follows.'); '' for none.")
    think_markers: tuple[str, str] = Field(("<think>", "</think>"), description="The model's think block markers "
                                           "(open, close), which a thinking budget closes and a reasoning reply keeps.")

    @model_validator(mode="after")
    def _budget_alone(self) -> GenerationParams:
        if self.answer_budget is not None and self.thinking_budget is None:
            raise ValueError("answer_budget bounds the answer after a thinking budget's cut; set thinking_budget too "
                             "(or bound the whole reply with max_new_tokens)")
        if self.bridge and self.thinking_budget is None:
            raise ValueError("bridge is written where a thinking budget cuts the thinking; set thinking_budget too")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def keeps_thinking(self) -> bool:
        """Whether replies keep their think block (and end at the template's end of turn)."""
        return self.reasoning is not None or self.thinking_budget is not None


class Generator(Protocol):
    """Anything that turns prompts into completions, one per prompt, in input order.

    The factory's generators also set `finish_reasons` after each call: per prompt "stop" (the reply ended by
    itself) or "length" (it hit the token limit), which evaluation reports as the share of truncated replies.
    """

    model_id: str

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]: ...


def flatten_chat(messages: list[Message]) -> str:
    """A conversation as plain text, for models without a chat template: the contents, blank-line separated."""
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def close_thinking(reply: str, params: GenerationParams) -> str | None:
    """A reply cut by the thinking budget, its think block closed (`bridge`, then the end marker, then a blank line),
    ready for the answer to follow; None when the reply is not thinking (no think block opened and reasoning not
    on: a reply without thinking is bounded by max_new_tokens alone)."""
    open_, close = params.think_markers
    if open_ not in reply:
        if params.reasoning != "on":
            return None
        reply = f"{open_}\n{reply}" if reply.strip() else f"{open_}\n"
    body = reply.rstrip("\n")
    bridge = f"\n{params.bridge.strip()}" if params.bridge.strip() else ""
    return f"{body}{bridge}\n{close}\n\n"


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """`text` up to the first of the stop strings (all of it when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]
