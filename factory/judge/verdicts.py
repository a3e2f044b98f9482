"""A judge's reply read back strictly: one documented verdict format per mode; anything else is malformed, by reason.

    parse_score("The answer matches.\\nVerdict: correct", scale=None)      # reward 1.0
    parse_score("Clear and right.\\nScore: 7", scale=(1, 10))              # reward 2/3
    parse_pairwise("B is wrong.\\nVerdict: A", scale=None)                 # winner "A"
    parse_score("I think it is correct", scale=None).malformed            # "no_verdict"

The verdict is the reply's last non-empty line (after the think block, when the judge thinks), matched whole, with
nothing before or after it on that line (letters and words case-insensitive):

| mode | scale | last line | reward |
|---|---|---|---|
| score | none | `Verdict: correct` or `Verdict: incorrect` | 1 or 0 |
| score | (lo, hi) | `Score: N`, N a whole number in [lo, hi] | (N - lo) / (hi - lo) |
| pairwise | none | `Verdict: A`, `Verdict: B` or `Verdict: tie` | the response's: 1 won, 0 lost, 0.5 tie |
| pairwise | (lo, hi) | the same, after a line `Scores: A=N, B=M` (both in [lo, hi], the winner's not lower) | as above |

Malformed reasons: `empty` (nothing after the think block), `think_malformed` (a think block never closed, or more
than one), `no_verdict` (the last line is not the verdict line), `out_of_scale` (a number outside the scale),
`no_scores` (pairwise with a scale: the scores line missing or not in its format), `inconsistent` (the scores
contradict the verdict), and `truncated` in place of any of these when the judge's reply hit its token limit (raise
max_new_tokens). A malformed verdict has no reward; it is counted, never guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from factory.chat.thinking import final_answer, think_state
from factory.errors import UserError

__all__ = ["MALFORMED_REASONS", "JudgeBudgetError", "Verdict", "check_error_budget", "combine_orders",
           "malformed_counts", "parse_pairwise", "parse_score", "verdict_format"]

MALFORMED_REASONS = ("empty", "think_malformed", "no_verdict", "out_of_scale", "no_scores", "inconsistent", "truncated")

Scale = tuple[int, int]
Winner = Literal["A", "B", "tie"]

_CORRECT = re.compile(r"Verdict:[ \t]*(correct|incorrect)", re.IGNORECASE)
_SCORE = re.compile(r"Score:[ \t]*(-?\d+)")
_WINNER = re.compile(r"Verdict:[ \t]*(A|B|tie)", re.IGNORECASE)
_SCORES = re.compile(r"Scores:[ \t]*A[ \t]*=[ \t]*(-?\d+)[ \t]*,[ \t]*B[ \t]*=[ \t]*(-?\d+)", re.IGNORECASE)


class JudgeBudgetError(UserError):
    """More verdicts were malformed than the judge's error budget allows."""


@dataclass(frozen=True)
class Verdict:
    """One judged response: its reward in [0, 1] (None when malformed), why it is malformed, and the judge's reply.

    Pairwise, `preferred` says which side won from the response's view ("response", "reference" or "tie") and
    `scores` holds (response's, reference's) grades when the judge gives them; with both orders, `raw` holds both
    replies, separated by a line of '=' signs."""

    reward: float | None
    malformed: str | None
    raw: str
    grade: int | None = None  # score mode with a scale: the judge's number
    preferred: Literal["response", "reference", "tie"] | None = None
    scores: tuple[float, float] | None = None


def verdict_format(mode: str, scale: Scale | None) -> str:
    """The instruction that asks for the verdict line the parser reads (a prompt's `{verdict_format}`)."""
    if mode == "score" and scale is None:
        return 'End your reply with one line that says exactly "Verdict: correct" or "Verdict: incorrect".'
    if mode == "score":
        lo, hi = scale  # type: ignore[misc]
        return f'End your reply with one line "Score: N", where N is a whole number from {lo} (worst) to {hi} (best).'
    line = 'End your reply with one line that says exactly "Verdict: A", "Verdict: B" or "Verdict: tie".'
    if scale is None:
        return line
    lo, hi = scale
    return (f'Just before that line, grade both responses in one line "Scores: A=N, B=M", each a whole number from '
            f"{lo} (worst) to {hi} (best). {line}")


def _last_lines(reply: str) -> tuple[list[str], str | None]:
    """(the non-empty lines of the answer, stripped; a malformed reason or None)."""
    if think_state(reply or "") == "malformed":
        return [], "think_malformed"
    lines = [line.strip() for line in final_answer(reply or "").splitlines() if line.strip()]
    return lines, None if lines else "empty"


def parse_score(reply: str, scale: Scale | None) -> Verdict:
    """A score-mode verdict: correct/incorrect without a scale, else a grade on it."""
    lines, reason = _last_lines(reply)
    if reason:
        return Verdict(None, reason, reply)
    if scale is None:
        found = _CORRECT.fullmatch(lines[-1])
        if not found:
            return Verdict(None, "no_verdict", reply)
        return Verdict(1.0 if found.group(1).lower() == "correct" else 0.0, None, reply)
    found = _SCORE.fullmatch(lines[-1])
    if not found:
        return Verdict(None, "no_verdict", reply)
    lo, hi = scale
    grade = int(found.group(1))
    if not lo <= grade <= hi:
        return Verdict(None, "out_of_scale", reply, grade=grade)
    return Verdict((grade - lo) / (hi - lo), None, reply, grade=grade)


@dataclass(frozen=True)
class Comparison:
    """One pairwise reply read back: the winner by position, the grades of A and B, or why it is malformed."""

    winner: Winner | None
    scores: tuple[int, int] | None
    malformed: str | None
    raw: str


def parse_pairwise(reply: str, scale: Scale | None) -> Comparison:
    """A pairwise verdict: which position won (A, B or tie), and with a scale both grades."""
    lines, reason = _last_lines(reply)
    if reason:
        return Comparison(None, None, reason, reply)
    found = _WINNER.fullmatch(lines[-1])
    if not found:
        return Comparison(None, None, "no_verdict", reply)
    winner: Winner = "tie" if found.group(1).lower() == "tie" else found.group(1).upper()  # type: ignore[assignment]
    if scale is None:
        return Comparison(winner, None, None, reply)
    graded = _SCORES.fullmatch(lines[-2]) if len(lines) > 1 else None
    if not graded:
        return Comparison(None, None, "no_scores", reply)
    a, b = int(graded.group(1)), int(graded.group(2))
    if not (scale[0] <= a <= scale[1] and scale[0] <= b <= scale[1]):
        return Comparison(None, (a, b), "out_of_scale", reply)
    if (winner == "A" and a < b) or (winner == "B" and b < a):
        return Comparison(None, (a, b), "inconsistent", reply)
    return Comparison(winner, (a, b), None, reply)


_REWARD = {"response": 1.0, "reference": 0.0, "tie": 0.5}


def combine_orders(first: Comparison, second: Comparison | None) -> Verdict:
    """The response's verdict from the comparison with the response as A (`first`) and, when judged in both orders,
    with the response as B (`second`): when the two orders disagree, a tie (position bias cancels); the first
    malformed reply makes the verdict malformed."""
    sides = {"A": "response", "B": "reference", "tie": "tie"}
    swapped = {"A": "reference", "B": "response", "tie": "tie"}
    raw = first.raw if second is None else f"{first.raw}\n{'=' * 20}\n{second.raw}"
    for comparison in (first, second):
        if comparison is not None and comparison.malformed:
            return Verdict(None, comparison.malformed, raw)
    preferred = sides[first.winner]  # type: ignore[index]
    scores = first.scores
    if second is not None:
        other = swapped[second.winner]  # type: ignore[index]
        preferred = preferred if other == preferred else "tie"
        if scores is not None and second.scores is not None:
            scores = ((scores[0] + second.scores[1]) / 2, (scores[1] + second.scores[0]) / 2)
    grades = None if scores is None else (float(scores[0]), float(scores[1]))
    return Verdict(_REWARD[preferred], None, raw, preferred=preferred, scores=grades)  # type: ignore[arg-type]


def malformed_counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """How many verdicts were malformed, per reason (reasons that never occurred left out)."""
    return dict(Counter(v.malformed for v in verdicts if v.malformed))


def check_error_budget(verdicts: Sequence[Verdict], budget: float, where: str) -> None:
    """Raise `JudgeBudgetError` (one line naming `where`, the share and the reasons) when the share of malformed
    verdicts is above `budget`."""
    counts = malformed_counts(verdicts)
    bad = sum(counts.values())
    if verdicts and bad / len(verdicts) > budget:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        raise JudgeBudgetError(f"{where}: {bad} of {len(verdicts)} judge verdicts malformed ({bad / len(verdicts):.1%}: "
                               f"{reasons}), above the judge's error_budget {budget:.1%}; check the judge's replies "
                               "(its prompt's verdict format, max_new_tokens) or raise judge.error_budget")
