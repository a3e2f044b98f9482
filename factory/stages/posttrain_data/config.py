"""The post-training data stage's configuration: prompt sets, the teacher, tool-integrated reasoning, sampling.

    Config(procedural=[{"generator": "basic_arithmetic", "size": 64, "params": {"max_digits": 1},
                        "heldout_size": 32, "heldout_seed": 1000}],
           teacher={"kind": "openai", "base_url": "http://vllm:8000", "model": "nvidia/teacher"})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from factory.chat.records import Reasoning
from factory.generate import GenerationParams
from factory.generate.settings import GeneratorSettings
from factory.stage import StageConfig, no_effect
from factory.verify.sandbox import SandboxConfig


class ProceduralSet(StageConfig):
    """A reasoning-gym generator as a prompt set: training items from one seed and parameters, held-out items
    from a seed (and optionally parameters) training never sees."""

    generator: str = Field(description="reasoning-gym generator name, e.g. basic_arithmetic, chain_sum, gcd.")
    name: str | None = Field(None, description="The set's name in records and stats; default the generator's.")
    size: int = Field(64, ge=1, description="Training prompts drawn.")
    seed: int = Field(0, description="Seed of the training prompts.")
    params: dict[str, Any] = Field(default_factory=dict, description="Generator parameters, e.g. {min_digits: 1, max_digits: 1}.")
    heldout_size: int = Field(0, ge=0, description="Held-out prompts drawn (heldout.jsonl); 0 for none.")
    heldout_seed: int = Field(1_000_003, description="Seed of the held-out prompts; must differ from seed.")
    heldout_params: dict[str, Any] | None = Field(None, description="Generator parameters of the held-out prompts; None: params.")

    @model_validator(mode="after")
    def _apart(self) -> ProceduralSet:
        if self.heldout_size and self.heldout_seed == self.seed:
            raise ValueError(f"heldout_seed: must differ from seed ({self.seed}), so held-out prompts are ones training never saw")
        return self

    @property
    def set_name(self) -> str:
        return self.name or self.generator


class TaskSet(StageConfig):
    """A built-in task file (factory/tasks/data: multiple choice, tool calls) as a prompt set."""

    file: str = Field(description="Built-in task file name: multiple_choice, tool_calls, ...")
    name: str | None = Field(None, description="The set's name in records and stats; default the file's.")
    size: int | None = Field(None, ge=1, description="Most items taken (before the held-out split); all if unset.")
    templates: tuple[Literal["multiple_choice", "open_ended"], ...] = Field(
        ("multiple_choice", "open_ended"), min_length=1,
        description="CrossThink: how multiple-choice questions are posed; each item once per template.")
    heldout_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of items held out (chosen by a hash of the id).")

    @property
    def set_name(self) -> str:
        return self.name or self.file


class TeacherSettings(GeneratorSettings):
    """Who writes the solutions: the procedural solver, a local model, or an OpenAI-compatible server."""

    ROLE: ClassVar[str] = "teacher"

    kind: Literal["procedural", "transformers", "openai"] = Field(  # type: ignore[assignment]
        "procedural", description="procedural: step-by-step traces computed for procedural tasks (no model); "
        "transformers: a local model folder (model_dir, or the step's 'teacher' input); openai: vLLM, NIM, transformers serve.")
    name: str | None = Field(None, description="The teacher's name in records and stats; default procedural-solver or the model's id.")
    timeout_s: float = no_effect(300.0, "openai: seconds to wait for one answer (a teacher writes long solutions).")

    @property
    def is_model(self) -> bool:
        return self.kind != "procedural"


class ToolIntegratedReasoning(StageConfig):
    """OpenMathReasoning's tool-integrated reasoning for math prompts: a model teacher's ```python blocks run in
    the sandbox and their output comes back as an ```output block, up to max_rounds times per solution."""

    enabled: bool = Field(True, description="Offer code execution on math prompts (model teachers only).")
    max_rounds: int = Field(3, ge=1, description="Most code blocks run per solution.")
    output_chars: int = Field(1000, ge=16, description="Characters of a block's output fed back (the rest cut).")
    sandbox: SandboxConfig = Field(default_factory=lambda: SandboxConfig(timeout_s=10.0, memory_mb=512),
                                   description="Limits and isolation of the code runs.")
    workers: int = no_effect(2, "Sandboxes run at once.")


class BudgetControl(StageConfig):
    """Nemotron Nano 2's budget-control training data: beside the full traces, copies of verified mode-on solutions
    whose thinking is cut at a sampled token budget and closed the way the generator's `thinking_budget` closes it
    at inference (`bridge`, then the end-of-thinking marker), followed by the same answer. Budgets are counted in
    the tokens of the step's `model` input (the model this data will train), as a thinking budget counts them."""

    fraction: float = Field(0.3, gt=0.0, le=1.0, description="Share of verified mode-on solutions that also get a "
                            "truncated copy (chosen by a hash of the seed and the record's id).")
    budgets: tuple[int, ...] | None = Field(None, min_length=1, description="Thinking budgets (tokens) a copy's cut is "
                                            "drawn from (uniformly among those that cut its thinking short); e.g. the "
                                            "budgets evaluate sweeps. Give this or budget_range.")
    budget_range: tuple[int, int] | None = Field(None, description="(lowest, highest) thinking budget in tokens, drawn "
                                                 "uniformly (integers, both ends included, only those that cut the "
                                                 "thinking short). Give this or budgets.")
    bridge: str = Field("", description="Text written before the end-of-thinking marker of a cut think block, as the "
                        "generator's `bridge` (use the same one at inference); '' for none.")
    seed: int = Field(0, description="Seed of which solutions are copied and where each is cut.")

    @model_validator(mode="after")
    def _one_source(self) -> BudgetControl:
        if (self.budgets is None) == (self.budget_range is None):
            raise ValueError("budget_control: give exactly one of budgets (a list of token counts) or budget_range "
                             "([lowest, highest])")
        if self.budgets is not None and any(b < 0 for b in self.budgets):
            raise ValueError(f"budget_control.budgets: {list(self.budgets)} must be token counts >= 0")
        if self.budget_range is not None and not 0 <= self.budget_range[0] <= self.budget_range[1]:
            raise ValueError(f"budget_control.budget_range: {list(self.budget_range)} must be [lowest, highest] with "
                             "0 <= lowest <= highest")
        return self

    @property
    def candidates(self) -> tuple[int, ...]:
        """Every budget a cut may take, ascending."""
        if self.budgets is not None:
            return tuple(sorted(set(self.budgets)))
        low, high = self.budget_range  # type: ignore[misc]
        return tuple(range(low, high + 1))


def _default_procedural() -> list[ProceduralSet]:
    # one-digit sums and differences of two or three terms: small enough for a tiny model to learn on CPU
    one_digit = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1, "operators": ["+", "-"],
                 "allow_parentheses": False, "allow_negation": False}
    return [ProceduralSet(generator="basic_arithmetic", size=64, params=one_digit, heldout_size=32)]


class Config(StageConfig):
    """Post-training data: prompts from verifiable tasks, teacher solutions in both reasoning modes, only verified kept."""

    procedural: list[ProceduralSet] = Field(default_factory=_default_procedural,
                                            description="reasoning-gym generators, with their held-out seeds and parameters.")
    task_sets: list[TaskSet] = Field(default_factory=list, description="Built-in task files: multiple choice, tool calls.")
    prompts: list[str] = Field(default_factory=list, json_schema_extra={"external_input": True},
                               description="Your JSONL prompt files: {prompt, answer, verifier, ...} per line.")
    heldout_prompts: list[str] = Field(default_factory=list, json_schema_extra={"external_input": True},
                                       description="Your JSONL held-out prompt files (same format), never used for training.")
    teacher: TeacherSettings = Field(default_factory=TeacherSettings, description="Who writes the solutions.")
    reasoning: tuple[Reasoning, ...] = Field(("on", "off"), min_length=1,
                                             description="Reasoning modes a solution is written in (system 'detailed thinking on|off').")
    samples: int = Field(1, ge=1, description="Candidate solutions per prompt and mode (rejection sampling); 1 for the procedural solver.")
    keep_per_prompt: int = Field(1, ge=1, description="Most verified solutions kept per prompt and mode.")
    generation: GenerationParams = Field(default_factory=lambda: GenerationParams(max_new_tokens=512),
                                         description="Sampling of a model teacher (seed advances per sample).")
    tir: ToolIntegratedReasoning = Field(default_factory=ToolIntegratedReasoning, description="Code execution for math.")
    min_kept_per_set: int = Field(1, ge=1, description="A prompt set with fewer verified solutions fails the step.")
    code_sandbox: SandboxConfig = Field(default_factory=lambda: SandboxConfig(timeout_s=10.0),
                                        description="Limits of the sandbox that runs code solutions against their tests.")
    request_batch: int = Field(256, ge=1, description="Prompts handed to the teacher at once, then judged (bounds memory, "
                                                      "shows progress; a sampling teacher's seeds follow its batches).")
    verify_workers: int = no_effect(2, "Processes checking math answers (and sandboxes at once).")
    verify_timeout_s: float = Field(10.0, gt=0, description="Seconds one math check may take before it is scored wrong.")
    budget_control: BudgetControl | None = Field(None, description="Also write mode-on solutions cut at sampled "
                                                 "thinking budgets, then answered (Nano 2's budget control); needs the "
                                                 "'model' input, whose tokenizer counts the budgets. None: full traces only.")

    @model_validator(mode="after")
    def _sane(self) -> Config:
        if not (self.procedural or self.task_sets or self.prompts):
            raise ValueError("no prompt set: give procedural, task_sets or prompts")
        if self.samples > 1 and self.teacher.is_model and self.generation.greedy:
            raise ValueError("samples: more than one sample per prompt needs generation.temperature > 0 (greedy repeats itself)")
        names = [s.set_name for s in (*self.procedural, *self.task_sets)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"prompt set names must be unique; {twice} repeat (give each a name)")
        if self.budget_control is not None and "on" not in self.reasoning:
            raise ValueError("budget_control cuts thinking, which only mode-on solutions hold; add 'on' to reasoning")
        return self

    def required_inputs(self) -> set[str]:
        needed = {"teacher"} if self.teacher.kind == "transformers" and self.teacher.model_dir is None else set()
        if self.budget_control is not None:
            needed.add("model")  # its tokenizer counts the thinking budgets
        return needed

    def check_wiring(self, inputs: Mapping[str, str]) -> None:
        if "model" in inputs and self.budget_control is None:
            raise ValueError("inputs.model: only budget_control reads it (its tokenizer counts the thinking budgets); "
                             "set budget_control or leave the input out")

    def required_tools(self) -> dict[str, str]:
        """Only a model teacher runs code (TIR, code solutions); the procedural solver needs no sandbox."""
        tools = {}
        if self.teacher.is_model and self.tir.enabled and self.tir.sandbox.isolation == "bwrap":
            tools["tir.sandbox.isolation"] = "bwrap"
        if self.teacher.is_model and self.code_sandbox.isolation == "bwrap":
            tools["code_sandbox.isolation"] = "bwrap"
        return tools


def tiny() -> Config:
    """The smoke preset: one-digit arithmetic, 32 training and 16 held-out prompts, the procedural solver."""
    return Config(procedural=[p.model_copy(update={"size": 32, "heldout_size": 16}) for p in _default_procedural()])
