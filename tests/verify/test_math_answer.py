"""math-verify in worker processes: measured false-negative and false-positive rates on a labelled pair set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.verify.math_answer import MathVerifier, check

PAIRS = [json.loads(line) for line in (Path(__file__).parent / "math_pairs.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(workers=2, timeout_s=10) as v:
        yield v


def test_false_negative_and_false_positive_rates(verifier):
    verdicts = verifier.check_many([(p["gold"], p["answer"]) for p in PAIRS])
    equivalent = [v.correct for p, v in zip(PAIRS, verdicts) if p["equivalent"]]
    different = [v.correct for p, v in zip(PAIRS, verdicts) if not p["equivalent"]]
    false_negative = equivalent.count(False) / len(equivalent)
    false_positive = different.count(True) / len(different)
    print(f"math-verify on {len(equivalent)} equivalent and {len(different)} different pairs: "
          f"false-negative rate {false_negative:.3f}, false-positive rate {false_positive:.3f}")
    assert len(equivalent) >= 30 and len(different) >= 25
    assert false_negative <= 0.05 and false_positive == 0.0


def test_malformed_answers_are_wrong_with_a_reason(verifier):
    verdicts = verifier.check_many([("5", ""), ("5", "no idea"), ("5", "\\boxed{\\frac{1}{}"), ("", "\\boxed{5}")])
    assert [v.correct for v in verdicts] == [False] * 4
    assert verdicts[0].reason == "no_answer" and verdicts[3].reason == "no_gold"
    assert not verdicts[2].parsed  # LaTeX sympy cannot read is kept only as text: malformed


def test_a_hung_check_is_killed_at_the_timeout():
    # a check that never returns stands for sympy stuck in C code: the worker is killed, the item scored wrong
    with MathVerifier(workers=1, timeout_s=1.5) as v:
        future = v._pool.schedule(_hang, timeout=v.timeout_s)
        with pytest.raises(TimeoutError):
            future.result()
        assert v.check_many([("2", "\\boxed{2}")])[0].correct  # the pool replaced the killed worker


def _hang():
    import time

    time.sleep(60)


def test_check_runs_in_the_main_thread_of_this_process():
    assert check("\\frac{1}{2}", "\\boxed{0.5}").correct and check("1", "\\boxed{2}").parsed
    assert check("2", "\\boxed{3}").reason == "mismatch"
