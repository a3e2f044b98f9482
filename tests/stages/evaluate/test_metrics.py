"""Metrics against their definitions: pass@k by exhaustive counting, maj@k, GenSelect parsing, acc/acc_norm."""

from __future__ import annotations

import itertools
import math

import pytest

from factory.stages.evaluate.metrics import (
    genselect_accuracy,
    genselect_prompt,
    likelihood_accuracy,
    maj_at_k,
    mean_estimate,
    parse_judgment,
    pass_at_1_averaged,
    pass_at_k,
    pass_at_k_item,
    perplexity,
)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 1, 5), (6, 6, 2), (7, 3, 7)])
def test_pass_at_k_is_the_chance_that_k_of_n_samples_hold_a_correct_one(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    exhaustive = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k_item(n, c, k) == pytest.approx(exhaustive, abs=1e-12)


def test_pass_at_k_over_problems_with_its_standard_error():
    estimate = pass_at_k([(10, 0), (10, 10), (10, 5)], k=1)
    assert estimate.value == pytest.approx(0.5) and estimate.items == 3
    assert estimate.stderr == pytest.approx(0.5 / math.sqrt(3))
    with pytest.raises(ValueError, match="at least 10 samples"):
        pass_at_k([(5, 1)], k=10)
    assert pass_at_1_averaged([[True, False, False, False], [True, True, True, True]]).value == pytest.approx(0.625)


def test_maj_at_k_groups_equivalent_answers():
    same = lambda a, b: abs(float(a) - float(b)) < 1e-9  # noqa: E731 - stands for the math verifier
    answers = [["0.5", "1/2", "2", None], ["3", "4", "4", "3"], [None, None, None, None]]
    answers = [[None if a is None else str(eval(a)) for a in row] for row in answers]  # noqa: S307 - test literals
    correct = [[True, True, False, False], [True, False, False, True], [False] * 4]
    estimate = maj_at_k(answers, correct, same)
    # problem 1: 0.5 twice wins; problem 2: a 2-2 tie goes to the first seen ("3", correct); problem 3: no votes
    assert estimate.value == pytest.approx(2 / 3)


def test_maj_at_k_groups_math_answers_with_the_verifiers_same_answer():
    """The benchmark's maj@k groups math answers that are written apart but equal (`MathVerifier.same_answer`)."""
    from factory.stages.evaluate.benchmarks import _sameness
    from factory.tasks.files import MathItem
    from factory.verify.math_answer import MathVerifier

    with MathVerifier(workers=1, timeout_s=10) as verifier:
        assert verifier.same_answer([("\\sqrt{4}", "2"), ("x+1", "2")]) == [True, False]
        same = _sameness([MathItem(id="q", problem="?", answer="2")], [["\\sqrt{4}", "2", "x+1"]], verifier)
    assert same("\\sqrt{4}", "2") and same("2", "2") and not same("x+1", "2")


def test_genselect_prompt_and_judgment():
    prompt = genselect_prompt("What is 2+2?", ["It is 5.", "It is \\boxed{4}."])
    assert "Solution 1:\nIt is \\boxed{4}." in prompt and "Judgment: [IDX]" in prompt
    assert parse_judgment("...so the second.\nJudgment: [1]", 2) == 1
    assert parse_judgment("Judgment: 0", 2) == 0
    assert parse_judgment("Judgment: [7]", 2) is None and parse_judgment("", 2) is None
    assert genselect_accuracy([1, None], [[False, True], [True, True]]).value == 0.5


def test_acc_and_acc_norm():
    # item 1: raw log-likelihood favours the short choice, per character the long one
    lls = [[-2.0, -3.0], [-1.0, -5.0]]
    choices = [[" a", " a long answer"], [" yes", " no"]]
    acc, acc_norm = likelihood_accuracy(lls, choices, gold=[1, 0])
    assert (acc.value, acc_norm.value) == (0.5, 1.0)


def test_perplexity_and_bits_per_byte():
    out = perplexity([20.0, 10.0], [10, 10], n_bytes=80)
    assert out["loss"] == pytest.approx(1.5) and out["perplexity"] == pytest.approx(math.exp(1.5))
    assert out["bits_per_byte"] == pytest.approx(30.0 / math.log(2) / 80)
    assert out["loss_stderr"] == pytest.approx(mean_estimate([2.0, 1.0]).stderr)
    assert out["perplexity_stderr"] == pytest.approx(math.exp(1.5) * out["loss_stderr"])
