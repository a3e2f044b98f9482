"""What every text generator shares: a prompt, the sampling parameters and the `Generator` protocol.

A prompt is either a chat conversation (a list of {"role", "content"} messages) or a plain string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Union

from pydantic import BaseModel, ConfigDict, Field

Message = dict[str, str]
Prompt = Union[str, list[Message]]

__all__ = ["GenerationParams", "Generator", "Message", "Prompt", "cut_at_stop", "flatten_chat"]


class GenerationParams(BaseModel):
    """How to sample a completion; the same meaning for every generator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(512, ge=1, description="Most tokens generated per prompt.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature; 0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (used only when sampling).")
    seed: int = Field(0, description="Random seed of sampling (local model: torch seed; endpoint: request seed).")
    stop: tuple[str, ...] = Field((), description="Strings that end a completion; the stop string is not kept.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class Generator(Protocol):
    """Anything that turns prompts into completions, one per prompt, in input order."""

    model_id: str

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]: ...


def flatten_chat(messages: list[Message]) -> str:
    """A conversation as plain text, for models without a chat template: the contents, blank-line separated."""
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """`text` up to the first of the stop strings (all of it when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]
