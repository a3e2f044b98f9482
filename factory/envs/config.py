"""An environment's settings (light: loading a spec imports it; `factory.envs.environment` builds the environment).

One `EnvironmentConfig` names one environment: where its tasks come from (exactly one source), how a reply is
scored, its tools and its limits, and its weight in an rl step's mixture:

    {name: arith, procedural: basic_arithmetic, weight: 2}              # reasoning-gym generator, math-verify
    {name: mcq, task_file: multiple_choice}                             # a built-in or user task file
    {name: mine, jsonl: data/prompts.jsonl}                             # Prompt records (verifier + answer)
    {name: code, data: code}                                            # the step's data input, one verifier's prompts
    {name: ifeval, instructions: {size: 256}}                           # verifiable constraints (IFEval-style)
    {name: pytool, procedural: chain_sum, tools: python, limits: {max_turns: 3}}   # multi-turn: code run in the sandbox
    {name: graded, procedural: gcd, scorer: judge,                      # a generative reward model scores
     judge: {generator: {kind: openai, base_url: ..., model: ...}}}
    {name: genrm, procedural: gcd, scorer: judge,                       # kind transformers without model_dir: the
     judge: {generator: {kind: transformers}, mode: pairwise}}          # rl step's `judge` input (an imported model)
    {name: user, module: "my_pkg.envs:Maze"}                            # a user's Environment subclass
    {name: gym, url: "http://127.0.0.1:8765"}                           # an HTTP environment (see factory.envs.remote)
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from factory.judge.config import JudgeConfig

__all__ = ["SCORERS", "SOURCES", "CurriculumConfig", "EnvironmentConfig", "InstructionSource", "Limits", "ProceduralSource",
           "WeightStage"]

# Where an environment's tasks come from: exactly one of these fields is set.
SOURCES = ("procedural", "task_file", "jsonl", "data", "instructions", "module", "url")
# How a reply is scored besides the verifier its task names (module and url environments score themselves).
SCORERS = ("judge",)

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_MODULE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class Limits(BaseModel):
    """An environment's own limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_turns: int = Field(1, ge=1, description="Assistant turns per episode (more than 1: tool output comes back "
                                                "between turns, masked out of the loss).")
    max_new_tokens: int | None = Field(None, gt=0, description="Most tokens per assistant turn; None: the rl step's "
                                                               "length schedule alone (the smaller of both applies).")
    timeout_s: float = Field(30.0, gt=0, description="Longest one scoring call (a step of the environment) may take; "
                                                     "past it the sample is lost and counted as 'timeout'.")


class ProceduralSource(BaseModel):
    """A reasoning-gym generator: training tasks from `seed`, held-out tasks from another seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generator: str = Field(min_length=1, description="reasoning-gym generator name, e.g. basic_arithmetic.")
    size: int = Field(256, ge=1, description="Training tasks generated.")
    seed: int = Field(0, description="Seed of the training tasks; held-out tasks use seed + 1_000_003.")
    params: dict[str, Any] = Field(default_factory=dict, description="The generator's own settings (its reasoning-gym "
                                                                     "config fields, e.g. max_digits).")


class InstructionSource(BaseModel):
    """IFEval-style prompts with verifiable constraints (length, format, keywords, JSON), generated from a seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(256, ge=1, description="Training prompts generated.")
    seed: int = Field(0, description="Seed of the training prompts; held-out prompts use seed + 1_000_003.")
    constraints: int = Field(1, ge=1, le=3, description="Constraints per prompt; the reward is the share a reply meets.")


class EnvironmentConfig(BaseModel):
    """One environment of an rl step: its task source (exactly one), scorer, tools, limits and mixture weight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Its name in metrics (rl/env/<name>/reward) and schedules.")
    procedural: ProceduralSource | str | None = Field(None, description="A reasoning-gym generator (a name, or "
                                                                        "{generator, size, seed}); scored with math-verify.")
    task_file: str | None = Field(None, description="A task file (built-in name or path): math, code, multiple_choice, "
                                                    "short_answer or tool_call items.")
    jsonl: str | None = Field(None, description="A JSONL file of Prompt records (id, task, verifier, answer, messages).")
    data: Literal["math", "code", "tool", "choice", "all"] | None = Field(
        None, description="The rl step's data input: its prompts of this verifier, or all of them (held-out: "
                          "heldout.jsonl's).")
    instructions: InstructionSource | None = Field(None, description="Generated prompts with verifiable constraints.")
    module: str | None = Field(None, description="A user's environment, 'package.module:Class' (a subclass of "
                                                 "factory.envs.Environment built with this config).")
    url: str | None = Field(None, description="An HTTP environment speaking factory.envs.remote's protocol.")
    scorer: Literal["judge"] | None = Field(
        None, description="None: the verifier the source's tasks name (math for procedural, the item type's for a task "
                          "file, each record's for jsonl and data, the constraint checks for instructions); 'judge': "
                          "the generative reward model `judge`, the task's answer as its reference.")
    judge: JudgeConfig | None = Field(None, description="scorer judge: the judge (factory.judge's JudgeConfig: model, "
                                                        "mode, prompt file, scale; kind transformers without model_dir: "
                                                        "the rl step's `judge` input); the task's answer is the reference.")
    tools: Literal["python"] | None = Field(None, description="python: a reply's last ```python block runs in the "
                                                              "sandbox and its output comes back as a tool turn, until "
                                                              "a reply holds no code or max_turns is reached.")
    weight: float = Field(1.0, ge=0, description="Sampling weight in the mixture (a weight schedule can change it).")
    heldout: int = Field(64, ge=0, description="Held-out tasks scored at the end of the run (0: none).")
    limits: Limits = Field(default_factory=Limits, description="Max turns, max tokens per turn, scoring timeout.")
    # None rather than 2: a resolved spec writes every default back, and a default must not read as set
    retries: int | None = Field(None, ge=0, description="url: retries of a failed request before the environment is "
                                                        "dropped (None: 2); refused for other sources.")

    @model_validator(mode="after")
    def _checked(self) -> EnvironmentConfig:
        if not _NAME.match(self.name):
            raise ValueError(f"environment name {self.name!r}: letters, digits, '_', '-' and '.' only (it names metrics)")
        given = [s for s in SOURCES if getattr(self, s) is not None]
        if len(given) != 1:
            raise ValueError(f"environment {self.name!r}: give exactly one task source of {list(SOURCES)}, got "
                             f"{given or 'none'}")
        source = given[0]
        if source in ("module", "url"):
            stray = [f for f in ("scorer", "judge", "tools") if getattr(self, f) is not None]
            if stray:
                raise ValueError(f"environment {self.name!r}: {', '.join(stray)} cannot be set for a {source} "
                                 "environment (it gives its own prompts, scores and tool turns)")
        if self.module is not None and not _MODULE.match(self.module):
            raise ValueError(f"environment {self.name!r}: module {self.module!r} must read 'package.module:Class'")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"environment {self.name!r}: url {self.url!r} must start with http:// or https://")
        if (self.scorer == "judge") != (self.judge is not None):
            raise ValueError(f"environment {self.name!r}: scorer judge and the judge settings go together")
        if self.judge is not None and self.judge.error_budget:
            raise ValueError(f"environment {self.name!r}: judge.error_budget: a malformed verdict loses its sample "
                             "within the rl step's error_budget; leave the judge's unset")
        if self.scorer == "judge" and source == "instructions":
            raise ValueError(f"environment {self.name!r}: instructions are scored by their constraint checks; a judge "
                             "has no reference answer to read there")
        if self.tools is not None and self.limits.max_turns < 2:
            raise ValueError(f"environment {self.name!r}: tools {self.tools!r} answer between turns; set "
                             "limits.max_turns to 2 or more")
        if self.retries is not None and self.url is None:
            raise ValueError(f"environment {self.name!r}: retries apply to an HTTP environment (url) only")
        if self.limits.max_turns > 1 and self.tools is None and source not in ("module", "url"):
            raise ValueError(f"environment {self.name!r}: limits.max_turns {self.limits.max_turns} needs tools (or a "
                             "module or url environment): nothing answers between the turns")
        return self

    @property
    def url_retries(self) -> int:
        """Retries of a failed request to an HTTP environment."""
        return 2 if self.retries is None else self.retries

    @property
    def source(self) -> str:
        """Which task source is set."""
        return next(s for s in SOURCES if getattr(self, s) is not None)

    @property
    def files(self) -> list[str]:
        """The files this environment reads (raw inputs of the step): a task file path or a JSONL."""
        out = [self.jsonl] if self.jsonl else []
        if self.task_file and ("/" in self.task_file or self.task_file.endswith(".jsonl")):
            out.append(self.task_file)
        return out + (self.judge.raw_inputs() if self.judge is not None else [])


class WeightStage(BaseModel):
    """One stage of the mixture's weight schedule: these weights until this fraction of the run's steps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    until_fraction: float = Field(gt=0, le=1, description="This stage ends after this fraction of the run's steps.")
    weights: dict[str, float] = Field(description="Weight per environment name (an environment left out keeps its own).")

    @model_validator(mode="after")
    def _non_negative(self) -> WeightStage:
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights must not be negative, got {self.weights}")
        return self


class CurriculumConfig(BaseModel):
    """Drop an environment that gives no signal any more (AceReason's dynamic sampling, per environment): over its
    last `window` groups, when at least `threshold` of them were all-correct (saturated) or all-equal (no signal)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(16, ge=2, description="Groups of one environment the decision looks at (its latest).")
    threshold: float = Field(0.9, gt=0, le=1, description="Share of zero-variance groups in the window that drops it.")
    min_environments: int = Field(1, ge=1, description="Never drop below this many environments.")
