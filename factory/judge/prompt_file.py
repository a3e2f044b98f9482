"""A judge's prompt as a file (NeMo-Skills' prompt-config style): a system turn and a user template, YAML.

    prompt = read_judge_prompt("pairwise", mode="pairwise")          # factory/judge/prompts/pairwise.yaml, or a path
    prompt.messages(question="2+3?", response_a="5", response_b="6", verdict_format="End with ...")

The user template holds, by mode, `{question}` and `{response}` (score; `{reference}` too when the judge compares with
a reference answer) or `{question}`, `{response_a}` and `{response_b}` (pairwise), and may hold `{verdict_format}`,
which the judge fills with the exact verdict line its parser reads (`factory.judge.verdicts.verdict_format`); literal
braces are doubled, as in Python's str.format. Built-in prompts (factory/judge/prompts/):

- `correctness` (score, no scale): the response against the reference answer, correct or incorrect.
- `quality` (score, with a scale): the response alone, graded for helpfulness, correctness and clarity.
- `pairwise` (pairwise): Nemotron 3's GenRM shape, two responses to one question, the better one named.
- `genselect` (the evaluate stage's GenSelect): the best of several candidate solutions, by index.
"""

from __future__ import annotations

import hashlib
import string
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from factory.errors import InputError

__all__ = ["JUDGE_PROMPTS_DIR", "JudgePrompt", "builtin_judge_prompts", "judge_prompt_path", "read_judge_prompt"]

JUDGE_PROMPTS_DIR = Path(__file__).parent / "prompts"

# The placeholders a template of each mode must hold, and those it may hold.
REQUIRED = {"score": {"question", "response"}, "pairwise": {"question", "response_a", "response_b"},
            "genselect": {"problem", "n", "solutions"}}
OPTIONAL = {"score": {"reference", "verdict_format"}, "pairwise": {"verdict_format"}, "genselect": set()}


class JudgePrompt(BaseModel):
    """The system turn and the user turn's template of a judge's prompts, and where they were read from."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    system: str = Field("", description="System turn text ('' for none).")
    user: str = Field(description="User turn template (placeholders by mode, see the module's docstring).")
    name: str = Field("", description="Where it was read from (its built-in name or path).")
    digest: str = Field("", description="sha256 of the file it was read from.")

    @field_validator("user")
    @classmethod
    def _formattable(cls, user: str) -> str:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(user) if f is not None]
        except ValueError as e:
            raise ValueError(f"user template does not format (double literal braces): {e}") from None
        if any(not f.isidentifier() for f in fields):
            raise ValueError(f"user template: placeholders are plain names, got {sorted(set(fields))}")
        return user

    @property
    def placeholders(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.user) if f}

    @property
    def reads_reference(self) -> bool:
        return "reference" in self.placeholders

    def check_mode(self, mode: str) -> None:
        """Raise `InputError` naming the file when the template does not fit `mode`'s placeholders."""
        missing = REQUIRED[mode] - self.placeholders
        stray = self.placeholders - REQUIRED[mode] - OPTIONAL[mode]
        if missing or stray:
            parts = ([f"lacks {', '.join(f'{{{m}}}' for m in sorted(missing))}"] if missing else []) + \
                ([f"has unknown {', '.join(f'{{{m}}}' for m in sorted(stray))}"] if stray else [])
            raise InputError(f"judge prompt {self.name!r}: a {mode} prompt's user template {' and '.join(parts)} (it "
                             f"takes {', '.join(sorted(REQUIRED[mode] | OPTIONAL[mode]))})")

    def messages(self, **values: Any) -> list[dict[str, str]]:
        """The chat messages of one judgement: the system turn (when not empty), then the user turn filled in."""
        system = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return [*system, {"role": "user", "content": self.user.format(**values)}]


def builtin_judge_prompts() -> list[str]:
    return sorted(p.stem for p in JUDGE_PROMPTS_DIR.glob("*.yaml"))


def judge_prompt_path(name: str) -> Path:
    """The file of judge prompt `name`: a built-in name, or a path to a YAML file."""
    if name in builtin_judge_prompts():
        return JUDGE_PROMPTS_DIR / f"{name}.yaml"
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise InputError(f"judge prompt {name!r} is neither a built-in one ({builtin_judge_prompts()}) nor a YAML file")


def read_judge_prompt(name: str, mode: str | None = None) -> JudgePrompt:
    """The judge prompt `name` (built-in name or YAML path), checked against `mode`'s placeholders when given; one
    `InputError` naming the file otherwise."""
    path = judge_prompt_path(name)
    raw = path.read_bytes()
    try:
        data: Any = yaml.safe_load(raw)
        if not isinstance(data, dict):
            raise InputError(f"{path}: a judge prompt is a mapping with `user` (and `system`)")
        prompt = JudgePrompt(**data, name=name, digest="sha256:" + hashlib.sha256(raw).hexdigest())
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not YAML ({e})") from None
    except (ValidationError, TypeError) as e:
        if isinstance(e, TypeError):
            raise InputError(f"{path}: {e}") from None
        first = e.errors()[0]
        raise InputError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if mode is not None:
        prompt.check_mode(mode)
    return prompt
