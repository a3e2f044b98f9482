"""The judge's verdict parser: the documented lines read back exactly; anything else malformed by reason, never guessed
(fuzzed with hypothesis); both orders of a pairwise judgement combined; the error budget enforced."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factory.judge import JudgeBudgetError, check_error_budget, malformed_counts, parse_pairwise, parse_score
from factory.judge.verdicts import MALFORMED_REASONS, combine_orders


@pytest.mark.parametrize("reply, reward, reason", [
    ("The final answers match.\nVerdict: correct", 1.0, None),
    ("Verdict: INCORRECT\n\n", 0.0, None),
    ("<think>\nthe response says 5\n</think>\n\nVerdict: correct", 1.0, None),
    ("", None, "empty"),
    ("<think>\nVerdict: correct\n</think>\n\n", None, "empty"),
    ("<think>\nstill thinking... Verdict: correct", None, "think_malformed"),
    ("Verdict: correct\nI am fairly sure.", None, "no_verdict"),  # the verdict must be the last line
    ("Verdict: correct.", None, "no_verdict"),
    ("**Verdict: correct**", None, "no_verdict"),
    ("Verdict: probably correct", None, "no_verdict"),
    ("Score: 9", None, "no_verdict"),
])
def test_correct_incorrect(reply, reward, reason):
    verdict = parse_score(reply, scale=None)
    assert (verdict.reward, verdict.malformed, verdict.raw) == (reward, reason, reply)


@pytest.mark.parametrize("reply, reward, grade, reason", [
    ("Clear and right.\nScore: 10", 1.0, 10, None),
    ("Score: 1", 0.0, 1, None),
    ("Score:4", 1 / 3, 4, None),
    ("Score: 11", None, 11, "out_of_scale"),
    ("Score: 0", None, 0, "out_of_scale"),
    ("Score: 7.5", None, None, "no_verdict"),
    ("Score: 7/10", None, None, "no_verdict"),
    ("Score: seven", None, None, "no_verdict"),
    ("Verdict: correct", None, None, "no_verdict"),
])
def test_grade_on_a_scale(reply, reward, grade, reason):
    verdict = parse_score(reply, scale=(1, 10))
    assert verdict.malformed == reason and verdict.grade == grade
    assert verdict.reward == pytest.approx(reward) if reward is not None else verdict.reward is None


@pytest.mark.parametrize("reply, scale, winner, scores, reason", [
    ("A is right, B is not.\nVerdict: A", None, "A", None, None),
    ("Verdict: b", None, "B", None, None),
    ("Verdict: Tie", None, "tie", None, None),
    ("Verdict: C", None, None, None, "no_verdict"),
    ("Verdict: A or B", None, None, None, "no_verdict"),
    ("Scores: A=4, B=2\nVerdict: A", (1, 5), "A", (4, 2), None),
    ("Scores: A=3, B=3\nVerdict: tie", (1, 5), "tie", (3, 3), None),
    ("Verdict: A", (1, 5), None, None, "no_scores"),
    ("Scores: A=4 B=2\nVerdict: A", (1, 5), None, None, "no_scores"),
    ("Scores: A=9, B=2\nVerdict: A", (1, 5), None, (9, 2), "out_of_scale"),
    ("Scores: A=2, B=4\nVerdict: A", (1, 5), None, (2, 4), "inconsistent"),
])
def test_pairwise(reply, scale, winner, scores, reason):
    comparison = parse_pairwise(reply, scale)
    assert (comparison.winner, comparison.scores, comparison.malformed) == (winner, scores, reason)


def test_both_orders_a_disagreement_is_a_tie():
    a, b, tie = (parse_pairwise(f"Verdict: {w}", None) for w in ("A", "B", "tie"))
    # response shown as A first, then as B: "A" then "B" both prefer the response
    assert combine_orders(a, b).preferred == "response" and combine_orders(a, b).reward == 1.0
    assert combine_orders(b, a).preferred == "reference" and combine_orders(b, a).reward == 0.0
    # a judge that always picks the first position disagrees with itself: a tie, not a win
    assert (combine_orders(a, a).preferred, combine_orders(a, a).reward) == ("tie", 0.5)
    assert combine_orders(a, tie).reward == 0.5
    assert combine_orders(a, None).reward == 1.0
    bad = parse_pairwise("no idea", None)
    verdict = combine_orders(a, bad)
    assert verdict.reward is None and verdict.malformed == "no_verdict" and "no idea" in verdict.raw
    graded = combine_orders(parse_pairwise("Scores: A=5, B=1\nVerdict: A", (1, 5)),
                            parse_pairwise("Scores: A=2, B=4\nVerdict: B", (1, 5)))
    assert graded.scores == (4.5, 1.5) and graded.reward == 1.0  # (response, reference), averaged over the orders


_LINE = {None: re.compile(r"Verdict:[ \t]*(correct|incorrect)", re.IGNORECASE), (1, 10): re.compile(r"Score:[ \t]*(-?\d+)")}


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=120), st.sampled_from([None, (1, 10)]))
def test_fuzzed_replies_are_read_or_malformed_never_guessed(reply, scale):
    verdict = parse_score(reply, scale)
    assert verdict.raw == reply
    assert (verdict.reward is None) == (verdict.malformed is not None)
    assert verdict.malformed is None or verdict.malformed in MALFORMED_REASONS
    if verdict.malformed is None:  # read only when the last line is exactly a verdict line
        last = [line.strip() for line in reply.split("</think>")[-1].splitlines() if line.strip()][-1]
        assert _LINE[scale].fullmatch(last)
        assert 0.0 <= verdict.reward <= 1.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Verdict: A", "Verdict: B", "Verdict: tie", "Scores: A=1, B=5", "Verdict", "A",
                                 "", "<think>", "</think>", "Scores: A=5, B=1", "B is better"]), max_size=6),
       st.sampled_from([None, (1, 5)]))
def test_fuzzed_pairwise_replies(lines, scale):
    comparison = parse_pairwise("\n".join(lines), scale)
    assert (comparison.winner is None) == (comparison.malformed is not None)
    if comparison.winner is not None:
        assert [x for x in lines if x.strip()][-1].startswith("Verdict: ")


def test_error_budget():
    verdicts = [parse_score(r, None) for r in ["Verdict: correct", "Verdict: incorrect", "maybe", "", "Verdict: correct"]]
    assert malformed_counts(verdicts) == {"no_verdict": 1, "empty": 1}
    check_error_budget(verdicts, 0.4, "here")  # 2 of 5 is within 40%
    with pytest.raises(JudgeBudgetError, match=r"^here: 2 of 5 judge verdicts malformed \(40.0%: no_verdict 1, empty 1\)"):
        check_error_budget(verdicts, 0.39, "here")
    check_error_budget([], 0.0, "here")  # nothing judged, nothing over budget
