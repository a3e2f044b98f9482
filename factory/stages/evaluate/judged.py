"""Judge benchmarks: the model under test answers, a generative judge (`factory.judge`) scores the answers.

    items = read_questions(Path("open_questions.jsonl"))      # {"id", "question", "reference"?} per line
    result = judge_score(items, [["It is 5."], ...], judge, "open")
    result.metrics   # {"open_judge_score": ..., "open_judge_score_stderr": ..., "open_judge_malformed": ..., ...}

The judge reads each item's question and, when its prompt compares with one, its reference (a reference answer in
score mode, a reference response in pairwise mode): from a questions file's `reference`, or a math item's `answer`
and a short-answer item's accepted answers. `<name>_judge_score` is the mean reward of the verdicts that parse (the
share judged correct, the mean grade on the scale mapped to [0, 1], or the win rate against the reference with ties
as half), with its standard error; malformed verdicts are counted apart (`_judge_malformed`, `_judge_malformed_rate`,
by reason in eval.json) and fail the step above the judge's error budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from factory.errors import InputError
from factory.jsonl import read_models
from factory.judge import Judge, Verdict, malformed_counts
from factory.stages.evaluate.metrics import mean_estimate
from factory.tasks.files import MathItem, ShortAnswerItem

__all__ = ["JudgeResult", "QuestionItem", "judge_inputs", "judge_score", "read_questions"]


class QuestionItem(BaseModel):
    """An open question a judge scores the answer of, with an optional reference (answer or response)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    reference: str | None = Field(None, min_length=1)


def read_questions(path: Path) -> list[QuestionItem]:
    """The items of a questions file (JSONL); one `InputError` naming the file and line of a bad record."""
    items = read_models(path, QuestionItem)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"{path}: id {item.id!r} appears twice; ids name the items in benchmarks.jsonl")
        seen.add(item.id)
    return items


def judge_inputs(item: Any, benchmark: str) -> tuple[str, str | None]:
    """(question, reference or None) of an item a judge scores."""
    if isinstance(item, QuestionItem):
        return item.question, item.reference
    if isinstance(item, MathItem):
        return item.problem, item.answer
    if isinstance(item, ShortAnswerItem):
        answers = [item.answer] if isinstance(item.answer, str) else list(item.answer)
        return item.question, " or ".join(answers)
    raise InputError(f"benchmark {benchmark!r}: a judge scores open questions, math and short-answer items, not "
                     f"{type(item).__name__}s (their own verifier scores those: remove `judge`)")


@dataclass
class JudgeResult:
    """A judge benchmark run's metrics and its verdicts, one per item."""

    metrics: dict[str, float]
    verdicts: list[Verdict] = field(default_factory=list)
    malformed: dict[str, int] = field(default_factory=dict)


def judge_score(items: Sequence[Any], answers: Sequence[Sequence[str]], judge: Judge, n: str,
                benchmark: str) -> JudgeResult:
    """Judge each item's one answer; metrics `<n>_judge_score` (with its standard error), `<n>_judge_malformed` and
    `<n>_judge_malformed_rate`. Fails with one line when the malformed share is above the judge's error budget."""
    if any(len(row) != 1 for row in answers):
        raise ValueError("a judge benchmark scores one answer per item")
    pairs = [judge_inputs(item, benchmark) for item in items]
    questions = [q for q, _ in pairs]
    references: list[str] | None = None
    if judge.config.mode == "pairwise" or judge.prompt.reads_reference:
        missing = [item.id for item, (_, ref) in zip(items, pairs) if ref is None]
        if missing:
            raise InputError(f"benchmark {benchmark!r}: judge prompt {judge.prompt.name!r} compares with a reference, "
                             f"and item {missing[0]!r} ({len(missing)} in all) has none; give every item a `reference`")
        references = [ref for _, ref in pairs]  # type: ignore[misc]
    verdicts = judge.judge(questions, [row[0] for row in answers], references)
    judge.check_budget(verdicts, f"stages.evaluate benchmark {benchmark!r}")
    rewards = [v.reward for v in verdicts if v.reward is not None]
    counts = malformed_counts(verdicts)
    bad = sum(counts.values())
    metrics = mean_estimate(rewards).as_dict(f"{n}_judge_score") if rewards else \
        {f"{n}_judge_score": math.nan, f"{n}_judge_score_stderr": math.nan}
    metrics |= {f"{n}_judge_malformed": float(bad), f"{n}_judge_malformed_rate": bad / len(verdicts) if verdicts else 0.0}
    return JudgeResult(metrics=metrics, verdicts=verdicts, malformed=counts)
