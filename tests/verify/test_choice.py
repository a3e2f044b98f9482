"""Multiple-choice letters, CrossThink templates and normalised short answers."""

from __future__ import annotations

import pytest

from factory.verify.choice import (
    check_choice,
    check_short_answer,
    extract_choice,
    multiple_choice_prompt,
    normalize_answer,
    open_ended_prompt,
)

OPTIONS = ["4", "6", "7", "9"]


def test_templates_carry_the_question_and_lettered_options():
    prompt = multiple_choice_prompt("Which number is prime?", OPTIONS)
    assert "Which number is prime?" in prompt and "(C) 7" in prompt and "\\boxed{}" in prompt
    assert "(A)" not in open_ended_prompt("Which number is prime?")
    with pytest.raises(ValueError, match="2 to 26 options"):
        multiple_choice_prompt("q", ["only one"])


@pytest.mark.parametrize(("reply", "letter"), [
    ("Seven is prime, so \\boxed{C}", "C"),
    ("\\boxed{(c)}", "C"),
    ("\\boxed{\\text{C}}", "C"),
    ("The answer is (C).", "C"),
    ("Answer: C", "C"),
    ("C", "C"),
    ("\\boxed{7}", "C"),  # the option's text, not its letter
    ("\\boxed{E}", None),  # no such option
    ("I am not sure", None),
    ("", None),
    ("\\boxed{C", None),
])
def test_extract_choice(reply, letter):
    assert extract_choice(reply, OPTIONS) == letter


def test_check_choice():
    assert check_choice("so \\boxed{B}", "b", OPTIONS)
    assert not check_choice("so \\boxed{A}", "B", OPTIONS)


def test_short_answers_compare_after_normalisation():
    assert normalize_answer("The  Carbon-Dioxide!") == "carbondioxide"
    assert check_short_answer("\\boxed{Carbon dioxide.}", "carbon dioxide")
    assert check_short_answer("\\boxed{\\text{the Moon}}", ["moon", "luna"])
    assert not check_short_answer("\\boxed{oxygen}", "carbon dioxide")
    assert not check_short_answer("\\boxed{}", "carbon dioxide")
