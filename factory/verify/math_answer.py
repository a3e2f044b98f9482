"""Check math answers with Hugging Face `math-verify`, in worker processes with a hard timeout per item.

    with MathVerifier(workers=2, timeout_s=5) as verifier:
        verdicts = verifier.check_many([("\\frac{1}{2}", "so the answer is \\boxed{0.5}")])
    verdicts[0].correct, verdicts[0].answer

`math-verify` extracts the answer (the last `\\boxed{}` first, else LaTeX or a plain expression), parses it
into sympy and compares it with the gold answer (numbers, fractions, sets, intervals, matrices, equations).
It bounds its own parsing and comparison with `signal.alarm`, which only works in a process's main thread,
so every check runs in a `pebble` worker process: the alarm works there, and a check that hangs anyway (in
C code, or past the alarm) is killed with its worker at `timeout_s` and scored wrong. A malformed answer
(empty, nothing parseable, LaTeX that sympy cannot read) is scored wrong with the reason, never raised.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout

from pydantic import BaseModel, ConfigDict, Field


class MathVerdict(BaseModel):
    """One answer checked against its gold answer."""

    model_config = ConfigDict(frozen=True)

    correct: bool = Field(description="The answer is mathematically equivalent to the gold answer.")
    answer: str | None = Field(None, description="The extracted answer as written (None: nothing could be extracted).")
    reason: str = Field("", description="Why it is wrong when it is: no_answer, no_gold, timeout, error: ..., mismatch.")
    parsed: bool = Field(False, description="The answer was read as mathematics, not only kept as its raw text.")


def _as_gold(gold: str) -> str:
    # a bare gold answer ("1/2", "\\frac{1}{2}") is read as one inline formula
    return gold if ("$" in gold or "\\boxed" in gold or "\\(" in gold) else f"${gold}$"


def check(gold: str, answer: str, timeout_s: int = 5) -> MathVerdict:
    """Check one answer in this process (its main thread: math-verify's alarms need it)."""
    # math-verify (sympy, its LaTeX parser) loads only where answers are checked: loading a spec imports this module
    from math_verify import parse, verify

    try:
        parsed_gold = parse(_as_gold(gold), parsing_timeout=timeout_s)
        if not parsed_gold:
            return MathVerdict(correct=False, reason="no_gold")
        parsed = parse(answer, parsing_timeout=timeout_s)
        if not parsed:
            return MathVerdict(correct=False, reason="no_answer")
        written = str(parsed[-1])
        # math-verify keeps LaTeX that sympy cannot read as a bare string: the answer is malformed
        readable = any(not isinstance(p, str) for p in parsed)
        ok = verify(parsed_gold, parsed, timeout_seconds=timeout_s)
    except Exception as e:  # noqa: BLE001 - a malformed answer is scored wrong, with the reason
        return MathVerdict(correct=False, reason=f"error: {type(e).__name__}: {e}"[:200])
    return MathVerdict(correct=bool(ok), answer=written, reason="" if ok else "mismatch", parsed=readable)


def extract(answer: str, timeout_s: int = 5) -> str | None:
    """The answer math-verify reads from `answer`, as written (for grouping votes), or None."""
    from math_verify import parse  # see check

    try:
        parsed = parse(answer, parsing_timeout=timeout_s)
    except Exception:  # noqa: BLE001
        return None
    return str(parsed[-1]) if parsed else None


def _warm() -> None:
    import math_verify  # noqa: F401 - import once per worker, not once per item


class MathVerifier:
    """A pool of worker processes that checks answers with a hard per-item timeout."""

    def __init__(self, workers: int = 2, timeout_s: float = 10.0):
        self.workers = workers
        self.timeout_s = timeout_s
        self._pool = None

    def __enter__(self) -> MathVerifier:
        from pebble import ProcessPool  # see check

        # forkserver: workers start from a clean process, not a fork of one holding torch's threads
        self._pool = ProcessPool(max_workers=self.workers, initializer=_warm,
                                 context=multiprocessing.get_context("forkserver"))
        return self

    def __exit__(self, *exc) -> None:
        self._pool.stop()
        self._pool.join()
        self._pool = None

    def check_many(self, pairs: Sequence[tuple[str, str]]) -> list[MathVerdict]:
        """Verdicts for (gold, answer) pairs, in order; an item past `timeout_s` is killed and scored wrong."""
        if self._pool is None:
            with self:
                return self.check_many(pairs)
        inner = max(1, int(self.timeout_s / 2))  # math-verify's own alarms fire first; the kill is the backstop
        futures = [self._pool.schedule(check, args=(gold, answer, inner), timeout=self.timeout_s)
                   for gold, answer in pairs]
        verdicts = []
        for future in futures:
            try:
                verdicts.append(future.result())
            except FutureTimeout:
                verdicts.append(MathVerdict(correct=False, reason="timeout"))
            except Exception as e:  # noqa: BLE001 - a worker that died (memory) scores the item wrong
                verdicts.append(MathVerdict(correct=False, reason=f"error: {type(e).__name__}: {e}"[:200]))
        return verdicts

    def same_answer(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether each pair of model answers is equivalent (maj@k groups answers with this)."""
        return [v.correct for v in self.check_many(pairs)]
