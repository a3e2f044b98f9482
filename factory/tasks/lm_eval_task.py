"""lm-evaluation-harness task definitions, read and rendered as lm-eval 0.4 renders them, over local JSONL docs.

    task = read_lm_eval_task(Path("tasks/heldout.yaml"))     # one line naming the file and the key it cannot take
    requests = build_requests(task)                          # one per eval doc: context, continuations, gold
    scores = doc_scores(task, request, results)              # results: (log-likelihood, greedy) per continuation

A task file is lm-eval's YAML (`include:` merged as lm-eval merges it, the including file's keys winning):

| key | what it does here, as in lm-eval |
|---|---|
| task | the task's name; it keys the metrics (`<task>_acc`) |
| dataset_path: json, dataset_kwargs: {data_files} | local JSONL docs (one object a line): a file or list (split `train`), or {split: file or list}; relative paths are relative to the YAML's folder (lm-eval hands them to `datasets`, which reads them from the working folder) |
| test_split, validation_split, training_split, fewshot_split | the docs scored: test, else validation; few-shot examples from fewshot_split, else training, else validation, else test |
| doc_to_text, doc_to_target, doc_to_choice | a doc key, or a Jinja2 template (lm-eval's environment: StrictUndefined, trailing newlines kept, `regex_replace`); choices also a list or {label: text}; a rendered target of digits is an index, a rendered choice list is a Python literal |
| target_delimiter (" "), fewshot_delimiter ("\\n\\n") | between question and answer, after each few-shot example |
| num_fewshot, fewshot_config: {sampler: default or first_n} | examples drawn by `random.Random(1234)` in doc order (lm-eval's default fewshot seed), or the first n in the docs' own order |
| description | a doc key or template put before the examples, with no delimiter |
| output_type | multiple_choice (each choice after the context) or loglikelihood (the target after the context) |
| metric_list | multiple_choice: acc, acc_norm; loglikelihood: acc (the target is the greedy continuation), perplexity; aggregation and higher_is_better only at their defaults |
| metadata, tag, should_decontaminate, doc_to_decontamination_query | recorded; the curate stage removes every doc of every task from the corpus, whatever these say |

Everything else (generation, filters, `!function` Python, process_docs, multiple inputs, other datasets) is refused
with one line naming the key. Docs are read as JSON values: keys missing from a doc are None, as `datasets` fills
them; a column mixing ints and floats stays as written (`datasets` would make it floats). Importing this module loads
no torch.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from factory.errors import InputError, SpecError
from factory.jsonl import read_objects, validation_reason

# lm-eval's `simple_evaluate(fewshot_random_seed=1234)`: the few-shot sampler's seed unless a run sets another
FEWSHOT_SEED = 1234
METRICS = {"multiple_choice": ("acc", "acc_norm"), "loglikelihood": ("perplexity", "acc")}  # lm-eval's defaults too
AGGREGATION = {"acc": "mean", "acc_norm": "mean", "perplexity": "perplexity"}
HIGHER_IS_BETTER = {"acc": True, "acc_norm": True, "perplexity": False}
KEYS = ("task", "dataset_path", "dataset_name", "dataset_kwargs", "training_split", "validation_split", "test_split",
        "fewshot_split", "doc_to_text", "doc_to_target", "doc_to_choice", "target_delimiter", "fewshot_delimiter",
        "num_fewshot", "fewshot_config", "description", "output_type", "metric_list", "metadata", "tag",
        "should_decontaminate", "doc_to_decontamination_query")
INVALID_LABEL = -100  # lm-eval's gold for a label no choice holds: never predicted, so the doc scores 0


class _Function:
    """A `!function` tag: Python named by a task file, which is refused (see `read_lm_eval_task`)."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Loader(yaml.SafeLoader):
    """lm-eval's YAML, but a `!function` loads as a marker instead of importing code."""


_Loader.add_constructor("!function", lambda loader, node: _Function(loader.construct_scalar(node)))


class _Metric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: str
    aggregation: str | None = None
    higher_is_better: bool | None = None


class _Fewshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sampler: Literal["default", "first_n"] = "default"


class _DatasetKwargs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    data_files: str | list[str] | dict[str, str | list[str]]


class TaskDefinition(BaseModel):
    """The keys of an lm-eval task file this module renders (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    task: str = Field(pattern=r"^[A-Za-z0-9_\-.]+$", max_length=100)
    dataset_path: Literal["json"]
    dataset_name: None = None
    dataset_kwargs: _DatasetKwargs
    training_split: str | None = None
    validation_split: str | None = None
    test_split: str | None = None
    fewshot_split: str | None = None
    doc_to_text: str
    doc_to_target: str | int
    doc_to_choice: str | list[str] | dict[str, str] | None = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int | None = Field(None, ge=0)
    fewshot_config: _Fewshot | None = None
    description: str = ""
    output_type: Literal["multiple_choice", "loglikelihood"]
    metric_list: list[_Metric] | None = None
    metadata: dict[str, Any] | None = None
    tag: str | list[str] | None = None
    should_decontaminate: bool = False
    doc_to_decontamination_query: str | None = None

    @field_validator("metric_list")
    @classmethod
    def _supported_metrics(cls, metrics: list[_Metric] | None, info) -> list[_Metric] | None:
        output = info.data.get("output_type")
        for m in metrics or []:
            if output in METRICS and m.metric not in METRICS[output]:
                raise ValueError(f"metric {m.metric!r} is not computed here for {output} (only {', '.join(METRICS[output])})")
            if m.aggregation not in (None, AGGREGATION.get(m.metric)):
                raise ValueError(f"{m.metric}: aggregation {m.aggregation!r} is not supported (only {AGGREGATION[m.metric]!r})")
            if m.higher_is_better not in (None, HIGHER_IS_BETTER.get(m.metric)):
                raise ValueError(f"{m.metric}: higher_is_better must be {HIGHER_IS_BETTER[m.metric]}")
        return metrics

    @model_validator(mode="after")
    def _splits(self) -> TaskDefinition:
        if self.test_split is None and self.validation_split is None:
            raise ValueError("needs test_split or validation_split (the docs it scores)")
        if self.output_type == "multiple_choice" and self.doc_to_choice is None:
            raise ValueError("output_type multiple_choice needs doc_to_choice")
        return self


@dataclass(frozen=True)
class LmEvalTask:
    """An lm-eval task file, read and checked: its definition, the docs files of each split, and its digest."""

    path: Path
    definition: TaskDefinition
    data_files: dict[str, tuple[Path, ...]]  # split -> files, absolute or relative to the working folder
    digest: str  # sha256 of the task file and every file it includes

    @property
    def name(self) -> str:
        return self.definition.task

    @property
    def eval_split(self) -> str:
        """The split scored: test, else validation (lm-eval's `eval_docs`)."""
        d = self.definition
        return d.test_split if d.test_split is not None else d.validation_split  # type: ignore[return-value]

    @property
    def fewshot_source(self) -> str:
        """The split few-shot examples come from (lm-eval's `fewshot_docs`)."""
        d = self.definition
        return next(s for s in (d.fewshot_split, d.training_split, d.validation_split, d.test_split) if s is not None)

    @property
    def num_fewshot(self) -> int:
        return self.definition.num_fewshot or 0

    @property
    def metrics(self) -> tuple[str, ...]:
        d = self.definition
        return tuple(m.metric for m in d.metric_list) if d.metric_list is not None else METRICS[d.output_type]

    def files(self) -> list[Path]:
        """Every docs file of every split, once."""
        return list(dict.fromkeys(f for files in self.data_files.values() for f in files))

    def docs(self, split: str) -> list[dict[str, Any]]:
        """The docs of `split`, each holding every key any doc of the split has (None where it is missing)."""
        if split not in self.data_files:
            raise InputError(f"{self.path}: split {split!r} has no data_files (it has {', '.join(self.data_files)})")
        rows: list[dict[str, Any]] = []
        for file in self.data_files[split]:
            if not file.is_file():
                raise InputError(f"{self.path}: data file {file} does not exist")
            rows += read_objects(file)
        if not rows:
            raise InputError(f"{self.path}: split {split!r} holds no docs")
        keys = list(dict.fromkeys(k for row in rows for k in row))
        return [{k: row.get(k) for k in keys} for row in rows]


def read_lm_eval_task(path: Path) -> LmEvalTask:
    """Read and check one lm-eval task file; a `SpecError` (bad key or value) or `InputError` (a file missing) names
    the file."""
    path = Path(path)
    raw, included = _load(path, ())
    unknown = [k for k in raw if k not in KEYS]
    if "group" in raw or isinstance(raw.get("task"), list):
        raise SpecError(f"{path}: a group of tasks; give each task's own file")
    functions = [k for k, v in raw.items() if isinstance(v, _Function)]
    if functions:
        raise SpecError(f"{path}: {functions[0]}: !function (Python named by the task) is not supported; "
                        "write it as a Jinja2 template")
    if unknown:
        raise SpecError(f"{path}: key {unknown[0]!r} is not supported (supported: {', '.join(KEYS)}, include)")
    try:
        definition = TaskDefinition.model_validate(raw)
    except ValidationError as e:
        raise SpecError(f"{path}: {validation_reason(e)}") from None
    files = definition.dataset_kwargs.data_files
    by_split = files if isinstance(files, dict) else {"train": files}
    data_files = {split: tuple(path.parent / f for f in ([fs] if isinstance(fs, str) else fs))
                  for split, fs in by_split.items()}
    task = LmEvalTask(path, definition, data_files, "sha256:" + hashlib.sha256(b"".join(included)).hexdigest())
    for split in dict.fromkeys([task.eval_split, *([task.fewshot_source] if task.num_fewshot else [])]):
        if split not in data_files:
            raise SpecError(f"{path}: split {split!r} is named but data_files has no such split "
                            f"(it has {', '.join(data_files)})")
    missing = [f for f in task.files() if not f.is_file()]
    if missing:
        raise InputError(f"{path}: data file {missing[0]} does not exist")
    return task


def _load(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], list[bytes]]:
    """(the file's keys with its includes merged, the bytes of every file read), as lm-eval's `load_yaml` merges."""
    where = path.resolve()
    if where in seen:
        raise SpecError(f"{path}: includes itself")
    try:
        data = path.read_bytes()
        raw = yaml.load(data, Loader=_Loader)  # a SafeLoader with one marker tag: no Python is constructed
    except FileNotFoundError:
        raise InputError(f"lm-eval task file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(f"{path}: not a readable YAML file ({e})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: an lm-eval task file is a YAML mapping")
    includes = raw.pop("include", None)
    merged: dict[str, Any] = {}
    read = [data]
    for inc in [] if includes is None else includes if isinstance(includes, list) else [includes]:
        if not isinstance(inc, str):
            raise SpecError(f"{path}: include: a file name, got {inc!r}")
        sub, sub_read = _load(path.parent / inc, (*seen, where))
        sub.pop("task_list", None)
        merged |= sub
        read += sub_read
    return merged | raw, read


def task_data_files(path: str) -> list[str]:
    """The docs files a task file names (for decontamination), or [] when it cannot be read (the evaluate config's
    validation then says why)."""
    try:
        return [str(f) for f in read_lm_eval_task(Path(path)).files()]
    except (SpecError, InputError):
        return []


# --- rendering, as lm-eval's ConfigurableTask does ---------------------------------------------------------------


def _regex_replace(string: str, pattern: str, repl: str, count: int = 0) -> str:
    return re.sub(pattern, repl, string, count=count)


_ENV = jinja2.Environment(loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_ENV.filters["regex_replace"] = _regex_replace


@cache
def _template(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def render(source: str, doc: Mapping[str, Any]) -> str:
    """A Jinja2 template rendered with the doc's keys (lm-eval's `utils.apply_template`)."""
    try:
        return _template(source).render(**doc)
    except jinja2.TemplateError as e:
        raise InputError(f"template {source!r}: {e}") from None


@dataclass(frozen=True)
class Renderer:
    """One task's doc_to_text, doc_to_target and doc_to_choice; `features` are the scored split's keys, which name
    doc fields where a template would otherwise be rendered."""

    definition: TaskDefinition
    features: tuple[str, ...]

    def text(self, doc: Mapping[str, Any]) -> Any:
        spec = self.definition.doc_to_text
        if spec in self.features:
            return doc[spec]
        out = render(spec, doc)
        return ast.literal_eval(out) if out.isdigit() and self.definition.doc_to_choice is not None else out

    def target(self, doc: Mapping[str, Any]) -> Any:
        spec = self.definition.doc_to_target
        if isinstance(spec, int):
            return spec
        if spec in self.features:
            return doc[spec]
        out = render(spec, doc)
        if out.isdigit() and self.definition.doc_to_choice is not None:
            return ast.literal_eval(out)
        if len(out) >= 2 and out[0] == "[" and out[-1] == "]":
            try:
                return ast.literal_eval(out)
            except (SyntaxError, ValueError):
                return out
        return out

    def choices(self, doc: Mapping[str, Any]) -> Any:
        spec = self.definition.doc_to_choice
        if isinstance(spec, list):
            return spec
        if isinstance(spec, dict):
            return list(spec.values())
        if spec in self.features:
            return doc[spec]
        out = render(spec, doc)  # type: ignore[arg-type]
        try:
            return ast.literal_eval(out)
        except (SyntaxError, ValueError):
            raise InputError(f"doc_to_choice {spec!r} rendered {out[:80]!r}, which is not a Python list") from None

    def description(self, doc: Mapping[str, Any]) -> str:
        spec = self.definition.description
        if not spec:
            return ""
        return str(doc[spec]) if spec in doc else render(spec, doc)


@dataclass(frozen=True)
class Request:
    """One doc to score: the context, the continuations whose log-likelihoods are asked for, and what scores them."""

    doc_id: int
    context: str
    continuations: list[str]
    choices: list[str] = field(default_factory=list)  # multiple_choice: the choices as the doc gives them
    gold: Any = None  # multiple_choice: an index, or indices when several choices are right


def build_requests(task: LmEvalTask, seed: int = FEWSHOT_SEED) -> list[Request]:
    """The requests of every doc of the scored split, in doc order, with lm-eval's few-shot contexts."""
    d = task.definition
    docs = task.docs(task.eval_split)
    renderer = Renderer(d, tuple(docs[0]))
    shots = task.num_fewshot
    sampler = _Sampler(task.docs(task.fewshot_source) if shots else [], seed, d.fewshot_config)
    # lm-eval leaves the doc out of its own examples only when fewshot_split is the test split (None == None too)
    exclude = d.fewshot_split == d.test_split
    out = []
    for doc_id, doc in enumerate(docs):
        where = f"{task.path}, {task.eval_split} doc {doc_id}"
        examples = sampler.sample(shots, doc if exclude else None, where) if shots else []
        context = renderer.description(doc) + "".join(_example(renderer, ex, where) for ex in examples)
        question = renderer.text(doc)
        if not isinstance(question, str):
            raise InputError(f"{where}: doc_to_text gave {question!r}; multiple-input tasks (a number: one context "
                             "per choice) are not supported")
        context += question
        if d.output_type == "loglikelihood":
            target = renderer.target(doc)
            if not isinstance(target, str):
                raise InputError(f"{where}: doc_to_target gave {target!r}; a loglikelihood task's target is text")
            out.append(Request(doc_id, context, [target]))
            continue
        choices = renderer.choices(doc)
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise InputError(f"{where}: doc_to_choice gave {choices!r}; it must be a non-empty list of strings")
        out.append(Request(doc_id, context, [d.target_delimiter + c for c in choices], choices,
                           _gold(renderer.target(doc), choices)))
    return out


def _example(renderer: Renderer, doc: Mapping[str, Any], where: str) -> str:
    """One few-shot example as lm-eval's `build_qa_turn` writes it: question, target delimiter, answer, few-shot
    delimiter (a doc without an answer adds its question alone)."""
    d = renderer.definition
    question, answer = renderer.text(doc), renderer.target(doc)
    if not isinstance(question, str):
        raise InputError(f"{where}: a few-shot example's doc_to_text gave {question!r}, not text")
    if answer is None or answer == "":
        return question
    choices = renderer.choices(doc) if d.doc_to_choice is not None else None
    text = choices[answer] if choices and isinstance(answer, int) else answer[0] if isinstance(answer, list) else answer
    if not isinstance(text, str):
        raise InputError(f"{where}: a few-shot example's answer is {text!r}, not text")
    return question + d.target_delimiter + text + d.fewshot_delimiter


def _gold(target: Any, choices: Sequence[str]) -> Any:
    """lm-eval's gold: an index (a label no choice holds is INVALID_LABEL), or indices for several right choices."""
    if isinstance(target, list):
        return [i if isinstance(i, int) and i < len(choices) else INVALID_LABEL for i in target]
    if isinstance(target, int):
        return target if target < len(choices) else INVALID_LABEL
    if isinstance(target, str):
        return choices.index(target) if target in choices else INVALID_LABEL
    return target


class _Sampler:
    """lm-eval's few-shot samplers: `default` draws from a `random.Random(seed)` shared by every doc in turn (n + 1
    docs when the doc itself must be left out, then drops it); `first_n` takes the first n in order."""

    def __init__(self, docs: list[dict[str, Any]], seed: int, config: _Fewshot | None) -> None:
        self.docs, self.rnd = docs, random.Random(seed)
        self.first_n = config is not None and config.sampler == "first_n"

    def sample(self, n: int, exclude: dict[str, Any] | None, where: str) -> list[dict[str, Any]]:
        if self.first_n:
            pool = [x for x in self.docs if x != exclude] if exclude is not None else self.docs
            if n > len(pool):
                raise InputError(f"{where}: {n} few-shot examples asked, the split holds {len(pool)}")
            return pool[:n]
        want = n + 1 if exclude else n
        if want > len(self.docs):
            raise InputError(f"{where}: {n} few-shot examples asked, the split holds {len(self.docs)}")
        drawn = self.rnd.sample(self.docs, want)
        picked = [x for x in drawn if x != exclude][:n] if exclude else drawn
        if len(picked) < n:  # copies of the doc itself drawn: draw again from the docs that are not it
            pool = [x for x in self.docs if x != exclude]
            if n > len(pool):
                raise InputError(f"{where}: {n} few-shot examples asked, the split holds {len(pool)} other docs")
            picked = self.rnd.sample(pool, n)
        return picked


# --- scoring one doc, as lm-eval's process_results does ----------------------------------------------------------


def doc_scores(task: LmEvalTask, request: Request, results: Sequence[tuple[float, bool]]) -> dict[str, float]:
    """The task's per-doc metrics from (log-likelihood, greedy) per continuation: multiple_choice's acc (the best
    log-likelihood is the gold choice) and acc_norm (the best per character of the choice's text), loglikelihood's
    acc (the target is the greedy continuation) and the log-likelihood that `perplexity` aggregates."""
    wanted = task.metrics
    if task.definition.output_type == "loglikelihood":
        (ll, greedy), = results
        return {k: v for k, v in (("perplexity", float(ll)), ("acc", float(greedy))) if k in wanted}
    pred, pred_norm = choice_predictions([ll for ll, _ in results], request.choices)
    gold = request.gold
    hit = (lambda p: p in gold) if isinstance(gold, list) else (lambda p: p == gold)
    scores = {"acc": float(hit(pred)), "acc_norm": float(hit(pred_norm))}
    return {k: v for k, v in scores.items() if k in wanted}


def choice_predictions(loglikelihoods: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(the choice of highest log-likelihood, the choice of highest log-likelihood per character of its text): the
    predictions lm-eval's acc and acc_norm score (the first of equal ones, as numpy's argmax takes it)."""
    lls = np.asarray(loglikelihoods, dtype=np.float64)
    lengths = np.asarray([float(len(c)) for c in choices])
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty choice: lm-eval divides by zero too
        return int(np.argmax(lls)), int(np.argmax(lls / lengths))
