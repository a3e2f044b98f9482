"""Evaluation metrics, each with a standard error, after NeMo-Skills and lm-evaluation-harness.

    pass_at_k([(n, c), ...], k=10)          # unbiased pass@k (Chen et al. 2021), its standard error
    maj_at_k(answers, correct, same)        # majority vote over verifier-equivalent answers
    likelihood_accuracy(lls, choices, gold) # acc and acc_norm of multiple choice by log-likelihood
    loglikelihood_perplexity(lls)           # exp(-mean log-likelihood) of a loglikelihood task
    perplexity(nll_per_window, tokens_per_window, n_bytes)

Every figure is an `Estimate` (value, standard error, items). The standard error is that of a mean over
independent items, std(ddof=1) / sqrt(n), as lm-evaluation-harness reports it; perplexity's comes from the
mean NLL's by the delta method (d exp(x) = exp(x) dx).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from factory.judge.prompt_file import read_judge_prompt
from factory.tasks.lm_eval_task import choice_predictions


@dataclass(frozen=True)
class Estimate:
    """A metric over `items` independent items and its standard error."""

    value: float
    stderr: float
    items: int

    def as_dict(self, name: str) -> dict[str, float]:
        return {name: self.value, f"{name}_stderr": self.stderr}


def mean_estimate(scores: Sequence[float]) -> Estimate:
    """The mean of per-item scores and its standard error (0 for fewer than 2 items)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no items to average")
    stderr = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0
    return Estimate(float(values.mean()), stderr, int(values.size))


def pass_at_k_item(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with `c` correct among `n` samples: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    # the product form of Chen et al., stable for large n
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> Estimate:
    """Mean unbiased pass@k over problems given (samples, correct) per problem."""
    return mean_estimate([pass_at_k_item(n, c, k) for n, c in counts])


def pass_at_1_averaged(correct: Sequence[Sequence[bool]]) -> Estimate:
    """pass@1 averaged over each problem's k samples (the fraction correct, then the mean over problems)."""
    return mean_estimate([sum(row) / len(row) for row in correct])


def majority(answers: Sequence[Any], same: Callable[[Any, Any], bool]) -> int | None:
    """Index of a representative of the largest group of equivalent answers (first seen wins ties); None
    answers (nothing extracted) never vote."""
    groups: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for group in groups:
            if same(answers[group[0]], answer):
                group.append(i)
                break
        else:
            groups.append([i])
    if not groups:
        return None
    return max(groups, key=len)[0]  # max keeps the first of equal lengths


def maj_at_k(answers: Sequence[Sequence[Any]], correct: Sequence[Sequence[bool]],
             same: Callable[[Any, Any], bool]) -> Estimate:
    """maj@k: a problem counts when its majority answer (grouped by `same`, the verifier's equivalence) is correct."""
    scores = []
    for row_answers, row_correct in zip(answers, correct, strict=True):
        chosen = majority(row_answers, same)
        scores.append(float(chosen is not None and row_correct[chosen]))
    return mean_estimate(scores)


_JUDGMENT = re.compile(r"Judgment:\s*\[?\s*(\d+)\s*\]?")


def genselect_prompt(problem: str, solutions: Sequence[str]) -> str:
    """The GenSelect prompt (NeMo-Skills, OpenMathReasoning): a problem and indexed candidate solutions, posed by the
    judges' prompt file `genselect` (factory/judge/prompts/genselect.yaml) as plain text, completed as it is."""
    body = "\n\n".join(f"Solution {i}:\n{s}" for i, s in enumerate(solutions))
    return _genselect_template().format(n=len(solutions), problem=problem, solutions=body)


@cache
def _genselect_template() -> str:
    return read_judge_prompt("genselect", mode="genselect").user  # a built-in file, read once


def parse_judgment(reply: str, n: int) -> int | None:
    """The index a GenSelect reply chose (its last `Judgment: [IDX]`), or None when absent or out of range."""
    found = _JUDGMENT.findall(reply or "")
    if not found:
        return None
    index = int(found[-1])
    return index if 0 <= index < n else None


def genselect_accuracy(judgments: Sequence[int | None], correct: Sequence[Sequence[bool]]) -> Estimate:
    """Share of problems whose selected solution is correct; an unreadable judgment counts as wrong."""
    return mean_estimate([float(j is not None and row[j]) for j, row in zip(judgments, correct, strict=True)])


def likelihood_accuracy(loglikelihoods: Sequence[Sequence[float]], choices: Sequence[Sequence[str]],
                        gold: Sequence[int]) -> tuple[Estimate, Estimate]:
    """(acc, acc_norm) of multiple choice: the choice with the highest log-likelihood, and with the highest
    log-likelihood per character of the choice's text (lm-evaluation-harness's acc_norm)."""
    acc, acc_norm = [], []
    for lls, texts, g in zip(loglikelihoods, choices, gold, strict=True):
        pred, pred_norm = choice_predictions(lls, texts)
        acc.append(float(pred == g))
        acc_norm.append(float(pred_norm == g))
    return mean_estimate(acc), mean_estimate(acc_norm)


def loglikelihood_perplexity(loglikelihoods: Sequence[float]) -> Estimate:
    """lm-eval's `perplexity` of a loglikelihood task, exp(-mean log-likelihood) over items, with the standard error
    of the mean carried by the delta method (lm-eval bootstraps its standard error instead)."""
    mean = mean_estimate([-float(ll) for ll in loglikelihoods])
    return Estimate(math.exp(mean.value), math.exp(mean.value) * mean.stderr, mean.items)


def perplexity(nll_per_window: Sequence[float], tokens_per_window: Sequence[int],
               n_bytes: float | None = None) -> dict[str, float]:
    """Perplexity (and bits per byte when the text's UTF-8 size is known) from summed NLL (nats) per window,
    with standard errors over windows."""
    nll = np.asarray(nll_per_window, dtype=np.float64)
    tokens = np.asarray(tokens_per_window, dtype=np.float64)
    per_token = nll / tokens  # mean NLL of each window
    mean = float(nll.sum() / tokens.sum())
    stderr = float(per_token.std(ddof=1) / math.sqrt(per_token.size)) if per_token.size > 1 else 0.0
    out = {"loss": mean, "loss_stderr": stderr, "perplexity": math.exp(mean), "perplexity_stderr": math.exp(mean) * stderr}
    if n_bytes:
        scale = tokens.sum() / (math.log(2) * n_bytes)  # nats per token -> bits per byte
        out |= {"bits_per_byte": mean * scale, "bits_per_byte_stderr": stderr * scale}
    return out
