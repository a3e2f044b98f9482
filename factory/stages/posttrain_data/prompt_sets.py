"""Prompt sets with their references: reasoning-gym generators, built-in task files, and your JSONL files.

    sets = prompt_sets(config)         # [PromptSet(name, source, train=[Prompt], heldout=[Prompt], overlap)]

Every prompt is posed through a template file (`templates/`): math, CrossThink's multiple-choice and
open-ended forms, tool calls, code. A procedural set draws its training prompts from one seed and parameters
and its held-out prompts from another seed (and optionally other parameters); a training prompt whose text
equals a held-out one is removed anyway (counted as `overlap`), so the held-out prompts are never trained on.

Your JSONL prompt files hold one prompt per line:

    {"prompt": "What is 17 * 3?", "answer": "51"}                                     # verifier math (default)
    {"prompt": "Which is a prime?", "options": ["4", "6", "7"], "answer": "C", "verifier": "choice"}
    {"prompt": "Which gas do plants take in?", "answer": "carbon dioxide", "verifier": "choice"}
    {"prompt": "Weather in Oslo?", "tools": [...], "answer": [{"name": "weather", "arguments": {"city": "Oslo"}}], "verifier": "tool"}
    {"prompt": "def add(a, b):\\n", "answer": "assert add(1, 2) == 3", "verifier": "code"}

with optional `id` and `task` (default: the file's stem). A prompt without an answer fails the step with
one error naming the file, the line and how many prompts lack one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import reasoning_gym
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from reasoning_gym.factory import DATASETS

from factory.chat.records import Message, Prompt, VerifierName
from factory.errors import InputError, SpecError
from factory.jsonl import json_models
from factory.stages.posttrain_data.config import Config, ProceduralSet, TaskSet
from factory.stages.posttrain_data.templates import render
from factory.tasks import builtin_task_path, read_task_file
from factory.tasks.procedural import NUMERIC
from factory.verify.choice import LETTERS


@dataclass
class PromptSet:
    """One prompt set: its training and held-out prompts."""

    name: str
    source: str  # where it came from, for the tracker: "reasoning-gym:gcd", a task file, a JSONL path
    train: list[Prompt]
    heldout: list[Prompt] = field(default_factory=list)
    overlap: int = 0  # training prompts removed because a held-out prompt has the same text
    trains: bool = True  # False for your held-out files, which give held-out prompts only


def options_block(options: list[str]) -> str:
    return "\n".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(options))


def _user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def choice_prompt(pid: str, task: str, question: str, gold: Any, options: list[str] | None, meta: dict) -> Prompt:
    """A CrossThink question: multiple choice when it has options (gold is a letter), open-ended otherwise."""
    if options:
        text = render("multiple_choice", question=question.strip(), options=options_block(options))
        meta = {**meta, "template": "multiple_choice"}
    else:
        text = render("open_ended", question=question.strip())
        meta = {**meta, "template": "open_ended"}
    return Prompt(id=pid, task=task, verifier="choice", answer={"gold": gold, "options": list(options or [])},
                  messages=_user(text), meta=meta)


def _apart(name: str, source: str, train: list[Prompt], heldout: list[Prompt]) -> PromptSet:
    held = {p.question for p in heldout}
    kept = [p for p in train if p.question not in held]
    return PromptSet(name=name, source=source, train=kept, heldout=heldout, overlap=len(train) - len(kept))


# ------------------------------------------------------------------------------------------- reasoning-gym

def _draw(spec: ProceduralSet, where: str, split: str, size: int, seed: int, params: dict[str, Any]) -> list[Prompt]:
    if spec.generator not in DATASETS:
        close = [n for n in sorted(DATASETS) if spec.generator[:3] in n][:8]
        raise SpecError(f"{where}.generator: reasoning-gym has no generator {spec.generator!r}"
                        + (f" (similar: {', '.join(close)})" if close else f" ({len(DATASETS)} exist, e.g. {', '.join(NUMERIC)})"))
    try:
        dataset = reasoning_gym.create_dataset(spec.generator, size=size, seed=seed, **params)
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        field_name = "params" if split == "train" else "heldout_params"
        raise SpecError(f"{where}.{field_name}: generator {spec.generator!r} rejects {params}: {e}") from None
    name = spec.set_name
    out = []
    for i, entry in enumerate(dataset):
        metadata = json.loads(json.dumps(entry.get("metadata", {}), default=str))
        meta = {"set": name, "split": split, "generator": spec.generator, "seed": seed, "index": i,
                "params": params, "metadata": metadata}
        out.append(Prompt(id=f"{name}-{split}-{seed}-{i}", task=spec.generator, verifier="math",
                          answer=str(entry["answer"]), messages=_user(render("math", question=entry["question"].strip())),
                          meta=meta))
    return out


def procedural_set(spec: ProceduralSet, where: str) -> PromptSet:
    train = _draw(spec, where, "train", spec.size, spec.seed, spec.params)
    heldout = (_draw(spec, where, "heldout", spec.heldout_size, spec.heldout_seed,
                     spec.params if spec.heldout_params is None else spec.heldout_params) if spec.heldout_size else [])
    return _apart(spec.set_name, f"reasoning-gym:{spec.generator}", train, heldout)


# ------------------------------------------------------------------------------------- built-in task files

def _held_out(item_id: str, fraction: float) -> bool:
    """A stable choice of about `fraction` of the items, by a hash of the id (independent of order and size)."""
    h = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")
    return h / 2**64 < fraction


def task_set(spec: TaskSet, where: str) -> PromptSet:
    try:
        path = builtin_task_path(spec.file)
    except SpecError as e:
        raise SpecError(f"{where}.file: {e}") from None
    tasks = read_task_file(path)
    items = tasks.items[: spec.size] if spec.size else tasks.items
    name = spec.set_name
    train: list[Prompt] = []
    heldout: list[Prompt] = []
    for item in items:
        split = "heldout" if _held_out(item.id, spec.heldout_fraction) else "train"
        meta = {"set": name, "split": split, "file": spec.file, "item": item.id}
        pid = f"{name}-{split}-{item.id}"
        prompts: list[Prompt]
        if item.type == "multiple_choice":
            prompts = []
            for template in spec.templates:
                if template == "multiple_choice":
                    prompts.append(choice_prompt(f"{pid}-mc", tasks.name, item.question, item.answer, item.options, meta))
                else:  # CrossThink open-ended: the options removed, the right option's text is the answer
                    gold = item.options[LETTERS.index(item.answer)]
                    prompts.append(choice_prompt(f"{pid}-open", tasks.name, item.question, gold, None, meta))
        elif item.type == "short_answer":
            prompts = [choice_prompt(pid, tasks.name, item.question, item.answer, None, meta)]
        elif item.type == "tool_call":
            text = render("tool_call", tools=json.dumps(item.tools, indent=1), question=item.prompt.strip())
            prompts = [Prompt(id=pid, task=tasks.name, verifier="tool", messages=_user(text), meta=meta,
                              answer=[c.model_dump() for c in item.calls])]
        elif item.type == "math":
            prompts = [Prompt(id=pid, task=tasks.name, verifier="math", answer=item.answer,
                              messages=_user(render("math", question=item.problem.strip())), meta=meta)]
        elif item.type == "code":
            prompts = [Prompt(id=pid, task=tasks.name, verifier="code", answer=f"{item.tests}\n\ncheck({item.entry_point})\n",
                              messages=_user(render("code", question=item.prompt.rstrip())), meta=meta)]
        else:
            raise SpecError(f"{where}.file: {spec.file!r} holds {item.type} items, which have no verifiable answer "
                            "for post-training (use math, code, multiple_choice, short_answer or tool_call files)")
        (heldout if split == "heldout" else train).extend(prompts)
    return _apart(name, f"task-file:{spec.file}", train, heldout)


# ------------------------------------------------------------------------------------- your JSONL prompts

class UserPrompt(BaseModel):
    """One line of a JSONL prompt file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1, description="The question or request.")
    answer: Any = Field(None, description="The reference the verifier checks against.")
    verifier: VerifierName = Field("math", description="math, choice, tool or code.")
    id: str | None = Field(None, description="Unique id; default FILE-LINE.")
    task: str | None = Field(None, description="Task name in records; default the file's stem.")
    options: list[str] | None = Field(None, min_length=2, max_length=26, description="choice: lettered options.")
    tools: list[dict[str, Any]] | None = Field(None, description="tool: the tools offered (JSON schemas).")


def _missing(answer: Any) -> bool:
    return answer is None or (isinstance(answer, str | list | dict) and not answer)


def read_user_prompts(path: str | Path, split: Literal["train", "heldout"]) -> list[Prompt]:
    """A JSONL prompt file as Prompts; one `InputError` naming the file and line of the first bad prompt."""
    path = Path(path)
    rows = list(json_models(path, UserPrompt))
    if not rows:
        raise InputError(f"prompt set {path}: no prompts")
    lacking = [n for n, row in rows if _missing(row.answer)]
    if lacking:
        raise InputError(f"prompt set {path}: {len(lacking)} of {len(rows)} prompts have no answer (first at line "
                         f"{lacking[0]}); every prompt needs 'answer', the reference its verifier checks")
    name = path.stem
    out = []
    for lineno, row in rows:
        pid = row.id or f"{name}-{lineno}"
        task = row.task or name
        meta = {"set": name, "split": split, "file": path.name, "line": lineno}
        try:
            if row.verifier == "choice":
                gold = row.answer.strip().upper() if row.options and isinstance(row.answer, str) else row.answer
                out.append(choice_prompt(pid, task, row.prompt, gold, row.options, meta))
            elif row.verifier == "tool":
                text = render("tool_call", tools=json.dumps(row.tools or [], indent=1), question=row.prompt.strip())
                out.append(Prompt(id=pid, task=task, verifier="tool", answer=row.answer, messages=_user(text), meta=meta))
            elif row.verifier == "code":
                out.append(Prompt(id=pid, task=task, verifier="code", answer=row.answer,
                                  messages=_user(render("code", question=row.prompt.rstrip())), meta=meta))
            else:
                answer = row.answer if isinstance(row.answer, str) else json.dumps(row.answer)
                out.append(Prompt(id=pid, task=task, verifier="math", answer=answer,
                                  messages=_user(render("math", question=row.prompt.strip())), meta=meta))
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise InputError(f"{path}:{lineno}: answer: {msg}") from None
    dup = _first_repeat(p.id for p in out)
    if dup is not None:
        raise InputError(f"prompt set {path}: id {dup!r} occurs more than once")
    return out


# ------------------------------------------------------------------------------------------------- all sets

def _first_repeat(ids: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None


def prompt_sets(config: Config) -> list[PromptSet]:
    """Every prompt set the config names, in config order; user held-out files are their own sets' held-out part."""
    sets = [procedural_set(s, f"procedural[{i}]") for i, s in enumerate(config.procedural)]
    sets += [task_set(s, f"task_sets[{i}]") for i, s in enumerate(config.task_sets)]
    heldout = [p for path in config.heldout_prompts for p in read_user_prompts(path, "heldout")]
    for path in config.prompts:
        sets.append(_apart(Path(path).stem, str(path), read_user_prompts(path, "train"), []))
    if heldout:
        held = {p.question for p in heldout}
        for s in sets:
            kept = [p for p in s.train if p.question not in held]
            s.overlap += len(s.train) - len(kept)
            s.train = kept
        sets.append(PromptSet(name="heldout_prompts", source=",".join(map(str, config.heldout_prompts)), train=[], heldout=heldout,
                              trains=False))
    names = [s.name for s in sets]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SpecError(f"prompt set names repeat: {twice}; name each set (name:) or rename the files")
    dup = _first_repeat(p.id for s in sets for p in (*s.train, *s.heldout))
    if dup is not None:
        raise InputError(f"prompt id {dup!r} occurs in more than one prompt set; give the prompts unique ids")
    return sets
