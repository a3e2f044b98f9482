"""Prompt configs: how a benchmark's question is posed to a chat model, as a file (NeMo-Skills' style), not code.

    config = read_prompt_config("math")                 # factory/tasks/data/prompts/math.yaml, or a path to a YAML
    config.messages("What is 2 + 3?")                   # [{"role": "user", "content": "Solve ... What is 2 + 3?"}]

A prompt config is a YAML mapping with `user` (a template holding `{question}`; literal braces doubled, as in
Python's str.format) and an optional `system` (text for the system turn; '' for none). Built-in configs live in
factory/tasks/data/prompts/.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from factory.errors import InputError

__all__ = ["PROMPTS_DIR", "PromptConfig", "builtin_prompt_configs", "prompt_config_path", "read_prompt_config"]

PROMPTS_DIR = Path(__file__).parent / "data" / "prompts"


class PromptConfig(BaseModel):
    """The system turn and the user turn's template of a benchmark's prompts."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    system: str = Field("", description="System turn text ('' for none).")
    user: str = Field(description="User turn template; `{question}` is the item's question.")
    name: str = Field("", description="Where it was read from (its built-in name or path).")
    digest: str = Field("", description="sha256 of the file it was read from.")

    @field_validator("user")
    @classmethod
    def _has_question(cls, user: str) -> str:
        try:
            user.format(question="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"user template must hold only {{question}} (double other braces): {e}") from None
        if "{question}" not in user:
            raise ValueError("user template lacks {question}")
        return user

    def messages(self, question: str) -> list[dict[str, str]]:
        """The chat messages posing `question`: the system turn (when not empty), then the user turn."""
        system = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return [*system, {"role": "user", "content": self.user.format(question=question)}]


def builtin_prompt_configs() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))


def prompt_config_path(name: str) -> Path:
    """The file of prompt config `name`: a built-in name, or a path to a YAML file."""
    if name in builtin_prompt_configs():
        return PROMPTS_DIR / f"{name}.yaml"
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise InputError(f"prompt config {name!r} is neither a built-in one ({builtin_prompt_configs()}) nor a YAML file")


def read_prompt_config(name: str) -> PromptConfig:
    """The prompt config `name` (built-in name or YAML path), checked; one InputError naming the file otherwise."""
    path = prompt_config_path(name)
    raw = path.read_bytes()
    try:
        data: Any = yaml.safe_load(raw)
        if not isinstance(data, dict):
            raise InputError(f"{path}: a prompt config is a mapping with `user` (and `system`)")
        return PromptConfig(**data, name=name, digest="sha256:" + hashlib.sha256(raw).hexdigest())
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not YAML ({e})") from None
    except ValidationError as e:
        first = e.errors()[0]
        raise InputError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
