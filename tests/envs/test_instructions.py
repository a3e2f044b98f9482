"""IFEval-style verifiable constraints: each check on answers that meet it and answers that do not."""

from __future__ import annotations

import pytest

from factory.envs.instructions import KINDS, check_constraint, describe, instruction_reward, instruction_tasks

CASES = [
    ({"kind": "max_words", "n": 5}, "four words right here", "this answer has far more than five words"),
    ({"kind": "min_words", "n": 3}, "three whole words", "two words"),
    ({"kind": "include", "words": ["river", "stone"]}, "A Stone sits in the river.", "A stone sits in the riverbed."),
    ({"kind": "exclude", "words": ["blue"]}, "The sky is grey.", "The sky is Blue."),
    ({"kind": "bullets", "n": 2}, "* one\n* two", "* one\n* two\n* three"),
    ({"kind": "lowercase"}, "all quiet here", "All quiet here"),
    ({"kind": "end_with", "phrase": "That is all."}, "Bread rises. That is all.  ", "That is all. Bread rises."),
    ({"kind": "json"}, '```json\n{"a": 1}\n```', "[1, 2]"),
]


@pytest.mark.parametrize("constraint,good,bad", CASES, ids=[c["kind"] for c, _, _ in CASES])
def test_each_constraint_accepts_what_meets_it_and_refuses_what_does_not(constraint, good, bad):
    assert check_constraint(good, constraint) and not check_constraint(bad, constraint)
    assert describe(constraint)


def test_every_kind_is_checked_and_the_reward_is_the_share_met_in_the_final_answer():
    assert {c["kind"] for c, _, _ in CASES} == set(KINDS)
    constraints = [{"kind": "lowercase"}, {"kind": "max_words", "n": 3}]
    assert instruction_reward("<think>\nLet Me Think about it at length\n</think>\n\nok then", constraints) == 1.0
    assert instruction_reward("Ok then", constraints) == 0.5
    assert instruction_reward("Not Lowercase And Too Long", constraints) == 0.0


def test_tasks_are_reproducible_from_their_seed_and_never_contradict_themselves():
    tasks = instruction_tasks(50, seed=3, constraints=3)
    assert tasks == instruction_tasks(50, seed=3, constraints=3) and tasks != instruction_tasks(50, seed=4, constraints=3)
    for _, prompt, constraints in tasks:
        kinds = {c["kind"] for c in constraints}
        assert len(kinds) == 3 and not {"max_words", "min_words"} <= kinds and not {"json", "bullets"} <= kinds
        assert all(describe(c) in prompt for c in constraints)
