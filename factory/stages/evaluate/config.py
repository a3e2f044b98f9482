"""The evaluate stage's config: what to score, how, and the gates its metrics must pass."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from factory.chat.template import folder_chat_template, reasoning_switch
from factory.errors import SpecError, UserError
from factory.generate import GenerationParams
from factory.generate.settings import GeneratorSettings
from factory.judge.config import check_judge_input
from factory.stage import StageConfig, no_effect
from factory.stages.evaluate.benchmarks import BenchmarkConfig
from factory.stages.evaluate.gates import parse_gate
from factory.tasks.builtin import DEFAULT_PROMPTS
from factory.tasks.lm_eval_task import read_lm_eval_task, task_data_files
from factory.tasks.prompts import builtin_prompt_configs, read_prompt_config
from factory.tasks.sets import builtin_sets


class Config(StageConfig):
    """Held-out perplexity, evaluation-set scores and greedy generation samples for one checkpoint."""

    perplexity: bool = Field(
        True, description="Held-out perplexity and bits per byte on the `tokens` input's valid split, which it then "
        "needs; false: no held-out figures, and without a tokens input the model folder's own tokenizer is used.")
    seq_len: int = Field(256, ge=1, description="Tokens per evaluation window (each window reads seq_len + 1 tokens); "
        "evaluation-set items longer than seq_len tokens lose the start of their context.")
    batch_size: int = Field(8, ge=1, description="Windows (or evaluation-set items) per forward pass.")
    max_batches: int | None = Field(
        None, ge=1, description="Evaluate at most this many batches, taken from the start of the split; None for all."
    )
    tasks: list[str] = Field(
        default_factory=builtin_sets, description="Built-in evaluation sets to score (factory/tasks/sets); [] for none.")
    task_files: list[str] = Field(
        default_factory=list,
        description="Further evaluation sets: JSONL files of {id, context, target} items, each named after its file stem.",
        json_schema_extra={"external_input": True},
    )
    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PROMPTS), description="Prompts to complete greedily.")
    max_new_tokens: int = Field(32, ge=1, description="Tokens generated per prompt.")
    seed: int = Field(0, description="Torch seed set before evaluation (greedy decoding does not depend on it).")
    log_every: int = no_effect(10, "Log a running loss every this many batches.")
    benchmarks: list[BenchmarkConfig] = Field(
        default_factory=list, description="Generation benchmarks scored by the verifiers (humaneval, procedural, task files) or, "
        "with `judge`, by a generative judge (questions files, math and short-answer items).")
    multiple_choice_files: list[str] = Field(
        default_factory=list, description="multiple_choice task files scored by likelihood (acc, acc_norm) after the "
        "factory's prompt (`Question: ...\\nAnswer:`).", json_schema_extra={"external_input": True})
    lm_eval_tasks: list[str] = Field(
        default_factory=list, description="lm-evaluation-harness task files (YAML over local JSONL docs: doc_to_text, "
        "doc_to_choice, doc_to_target, delimiters, few-shot, description; multiple_choice or loglikelihood), each "
        "scored with its own prompt as lm-eval 0.4 scores it, at the model's context as lm-eval takes it: "
        "`<task>_acc`, `<task>_acc_norm`, `<task>_perplexity`, each with its standard error.",
        json_schema_extra={"external_input": True})
    generator: GeneratorSettings = Field(
        default_factory=GeneratorSettings, description="Who answers the benchmarks: kind 'transformers' without model_dir "
        "is the checkpoint evaluated, in-process; 'openai' an endpoint (e.g. serving that checkpoint).")
    generation: GenerationParams = Field(
        default_factory=lambda: GenerationParams(max_new_tokens=256),
        description="Sampling of the benchmarks' answers (temperature above 0 when samples > 1); its seed is added to "
                    "each benchmark's own seed.")
    modes: list[Literal["on", "off"]] | None = Field(
        None, description="Chat models (a tokenizer with a chat template): the reasoning modes each generation benchmark "
        "is scored in, separately (a benchmark's own `modes` wins); None: both when the template has a reasoning switch, "
        "else the template as it renders. A model without a template is asked in plain text, as before.")
    budgets: list[int] = Field(
        default_factory=list, description="Chat models: thinking budgets (tokens) each generation benchmark is also "
        "scored under in mode on (generation.thinking_budget per run; a benchmark's own `budgets` win); accuracy against "
        "budget goes to budget_curve.md and budget_curve.png. [] for none.")
    sandbox_isolation: Literal["bwrap", "none"] = Field(
        "bwrap", description="Code benchmarks run under bubblewrap; 'none' only for trusted code.")
    throughput_contexts: list[int] = Field(
        default_factory=list, description="Contexts (tokens) at which to measure decode tokens/s (the factory's decoder "
        "against transformers') and cache memory; [] for none (the numbers depend on the machine, which is recorded).")
    throughput_batch: int = Field(1, ge=1, description="Sequences decoded together in the throughput measurement (its "
                                  "metrics); the table also has batch 1.")
    throughput_baseline: bool = Field(
        False, description="Also measure a transformer of equal parameters with attention in every Mamba layer's place "
        "(MLP width matched; random weights), as Nemotron-H compares; both go in one plot and table.")
    gates: list[str] = Field(
        default_factory=list, description="Demands on this step's metrics, e.g. 'valid_perplexity <= 200', or relative "
        "to the evaluate step wired to the `baseline` input, e.g. 'valid_perplexity <= 1.03 * eval_bf16.valid_perplexity'; "
        "a failing gate fails the step before it publishes.")

    @model_validator(mode="before")
    @classmethod
    def _generator_fields_moved(cls, data: Any) -> Any:
        generator = data.get("generator") if isinstance(data, dict) else None
        if isinstance(generator, dict):
            if generator.get("kind") == "local":
                raise ValueError("generator.kind: 'local' is now 'transformers' (without model_dir: the checkpoint evaluated)")
            moved = [k for k in ("max_new_tokens", "temperature") if k in generator]
            if moved:
                raise ValueError(f"generator.{moved[0]}: sampling is set in `generation` now "
                                 f"({', '.join(f'generation.{k}' for k in moved)})")
        return data

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, budgets: list[int]) -> list[int]:
        if any(b < 0 for b in budgets) or len(set(budgets)) < len(budgets):
            raise ValueError(f"budgets: {budgets} must be distinct token counts >= 0")
        return sorted(budgets)

    @field_validator("benchmarks")
    @classmethod
    def _readable_prompts(cls, benchmarks: list[BenchmarkConfig]) -> list[BenchmarkConfig]:
        for i, bench in enumerate(benchmarks):
            try:
                read_prompt_config(bench.prompt)
            except UserError as e:
                raise ValueError(f"benchmarks[{i}].prompt: {e}") from None
        return benchmarks

    @model_validator(mode="after")
    def _switch_for_modes(self) -> Config:
        # a template without a reasoning switch cannot be asked for a mode: refused here when the generator names its
        # model folder; the step's own model is checked when the step runs (its folder is not known before)
        asked = [(f"benchmarks[{i}].modes", b.modes) for i, b in enumerate(self.benchmarks) if b.modes] + \
            ([("modes", self.modes)] if self.modes else [])
        if self.generation.thinking_budget is not None or self.generation.reasoning is not None:
            raise ValueError("generation.thinking_budget and generation.reasoning are set per run by the step: use "
                             "`budgets` and `modes`")
        folder = self.generator.model_dir if self.generator.kind == "transformers" else None
        if asked and folder:
            template = folder_chat_template(folder)
            if template is not None and not reasoning_switch(template):
                field, modes = asked[0]
                raise ValueError(f"stages.evaluate.{field}: {modes} asks for the reasoning switch, but the chat template "
                                 f"of {folder} has none (neither enable_thinking nor a `detailed thinking` system "
                                 "prompt); remove the modes")
        return self

    def required_tools(self) -> dict[str, str]:
        """Code benchmarks run their programs under bubblewrap (`factory.system_tools` checks it at load)."""
        code = any(b.source == "humaneval" for b in self.benchmarks)
        return {"sandbox_isolation": "bwrap"} if code and self.sandbox_isolation == "bwrap" else {}

    @field_validator("gates")
    @classmethod
    def _parse_gates(cls, gates: list[str]) -> list[str]:
        for i, gate in enumerate(gates):
            parse_gate(gate, field=f"stages.evaluate.gates[{i}]")
        return gates

    def baseline_steps(self) -> list[str]:
        """The steps this config's relative gates name (`FACTOR * STEP.METRIC`), in gate order."""
        steps = [g.relative_to[0] for g in map(parse_gate, self.gates) if g.relative_to is not None]
        return list(dict.fromkeys(steps))

    def required_inputs(self) -> set[str]:
        """Held-out perplexity needs the `tokens` input's valid split; a relative gate needs the other step's
        evaluation, through the `baseline` input; a heldout benchmark the conversations of the `data` input."""
        heldout = any(b.source == "heldout" for b in self.benchmarks)
        return ({"tokens"} if self.perplexity else set()) | ({"baseline"} if self.baseline_steps() else set()) | \
            ({"data"} if heldout else set())

    @classmethod
    def external_fields(cls) -> list[str]:
        # the docs an lm-eval task file names are raw inputs as much as the file is: their listing joins the
        # fingerprint (a read-only property, so a spec never writes it)
        return [*super().external_fields(), "lm_eval_docs", "prompt_files", "benchmark_files", "judge_files"]

    @property
    def benchmark_files(self) -> list[str]:
        """The task files the benchmarks of source `file` read: raw inputs like any other (a nested list field is not
        read for external inputs, so they are named here)."""
        return list(dict.fromkeys(b.task for b in self.benchmarks if b.source in ("file", "questions")))

    @property
    def judge_files(self) -> list[str]:
        """What the benchmarks' judges read that the factory does not ship (a prompt file by path, a local judge
        model's folder): raw inputs, so a changed judge reruns the step."""
        return list(dict.fromkeys(f for b in self.benchmarks if b.judge is not None for f in b.judge.raw_inputs()))

    @property
    def lm_eval_docs(self) -> list[str]:
        """Every docs file the `lm_eval_tasks` read, all splits, in task order."""
        files = [str(f) for path in self.lm_eval_tasks for f in read_lm_eval_task(Path(path)).files()]
        return list(dict.fromkeys(files))

    @property
    def prompt_files(self) -> list[str]:
        """The prompt config files the generation benchmarks name by path (a chat model is asked through them): their
        contents join the fingerprint like any raw input's. Built-in ones ship with the factory's code."""
        return list(dict.fromkeys(b.prompt for b in self.benchmarks if b.prompt not in builtin_prompt_configs()))

    @field_validator("lm_eval_tasks")
    @classmethod
    def _readable_lm_eval_tasks(cls, paths: list[str]) -> list[str]:
        # refused at spec load, one line naming the file and the key, like every field it cannot honour
        for path in paths:
            try:
                read_lm_eval_task(Path(path))
            except UserError as e:
                raise ValueError(str(e)) from None
        return paths

    @property
    def input_judges(self) -> list[int]:
        """The benchmarks (by index) whose judge is the step's `judge` input (kind transformers without model_dir);
        they share it."""
        return [i for i, b in enumerate(self.benchmarks) if b.judge is not None and b.judge.from_input]

    def check_wiring(self, inputs: Mapping[str, str]) -> None:
        check_judge_input([f"benchmarks.{i}.judge" for i in self.input_judges], inputs, "judge",
                          "no benchmark's judge", "give a judge kind transformers without model_dir")
        baseline = inputs.get("baseline")
        for i, gate in enumerate(self.gates):
            relative = parse_gate(gate).relative_to
            if relative is not None and relative[0] != baseline:
                raise ValueError(f"gates[{i}]: {gate!r} compares with step {relative[0]!r}, but this step's baseline "
                                 f"input is {baseline!r}; wire `inputs: {{baseline: {relative[0]}}}` (one baseline per "
                                 "evaluate step)")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        known = builtin_sets()
        for name in tasks:
            if name not in known:
                raise SpecError(f"stages.evaluate.tasks: unknown evaluation set {name!r}; built-in sets: {known}")
        return tasks

    @model_validator(mode="after")
    def _distinct_names(self) -> Config:
        # a set's name keys its metrics (`<name>_accuracy`), so no two sets may share one
        if len(set(self.tasks)) < len(self.tasks):
            raise SpecError(f"stages.evaluate.tasks: an evaluation set is listed twice in {self.tasks}")
        seen = set(self.tasks)
        for file in self.task_files:
            name = Path(file).stem
            if name in seen:
                raise SpecError(f"stages.evaluate.task_files: {file} is named {name!r} (its file stem), "
                                "like another evaluation set; rename the file")
            seen.add(name)
        seen |= {Path(f).stem for f in self.multiple_choice_files} | {b.name for b in self.benchmarks}
        for file in self.lm_eval_tasks:
            name = read_lm_eval_task(Path(file)).name
            if name in seen:
                raise SpecError(f"stages.evaluate.lm_eval_tasks: {file} is task {name!r}, a name another evaluation "
                                "set or benchmark of this step has; rename the task")
            seen.add(name)
        return self


def evaluated_files(config: dict[str, Any]) -> list[str]:
    """The files a raw evaluate config reads items from (task files, multiple-choice files, file benchmarks, the docs
    of lm-eval task files), which every curate step decontaminates against; anything not a string, or a task file
    that cannot be read, is left to the field validators to report."""
    files = [f for key in ("task_files", "multiple_choice_files") if isinstance(config.get(key), list) for f in config[key]]
    benchmarks = config.get("benchmarks")
    if isinstance(benchmarks, list):
        files += [b.get("task") for b in benchmarks if isinstance(b, dict) and b.get("source") in ("file", "questions")]
    tasks = config.get("lm_eval_tasks")
    if isinstance(tasks, list):
        files += [doc for task in tasks if isinstance(task, str) for doc in task_data_files(task)]
    return list(dict.fromkeys(f for f in files if isinstance(f, str) and f))
