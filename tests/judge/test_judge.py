"""The judge end to end: its config refuses what it cannot honour; against a real OpenAI-compatible HTTP server
(tests/stages/synth/fake_openai.py: a standard-library server on 127.0.0.1 speaking /v1/chat/completions, whose replies
a function of the prompt scripts) it scores, compares in both orders, and counts a garbage judge as malformed; and
in-process, a tiny random-weight model judges through transformers (its replies are garbage, counted as such)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from factory.errors import InputError
from factory.judge import Judge, JudgeBudgetError, JudgeConfig, malformed_counts, read_judge_prompt
from factory.judge.prompt_file import builtin_judge_prompts
from tests.stages.synth.fake_openai import FakeOpenAI


def endpoint(url: str, **fields) -> JudgeConfig:
    return JudgeConfig(generator={"kind": "openai", "base_url": url, "model": "judge-model"}, **fields)


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def correctness_judge(prompt: str) -> str:
    """Says correct when the response's last word is the reference answer."""
    reference, response = between(prompt, "Reference answer:", "Response:"), between(prompt, "Response:", "End your")
    return f"Comparing.\nVerdict: {'correct' if response.split()[-1] == reference else 'incorrect'}"


def test_config_refuses_what_it_cannot_honour(tmp_path):
    # no model folder: the judge is the step's `judge` input, which only the step can open it with
    from_input = JudgeConfig(generator={"kind": "transformers"})
    assert from_input.from_input and from_input.raw_inputs() == []
    with pytest.raises(InputError, match=r"^judge: generator.model_dir is unset, so the judge is the step's `judge` "):
        Judge(from_input)
    assert from_input.with_model(tmp_path).generator.model_dir == str(tmp_path)
    assert not from_input.with_model(tmp_path).from_input and not endpoint("http://x").from_input
    with pytest.raises(ValidationError, match="both_orders swaps"):
        endpoint("http://x", both_orders=True)
    with pytest.raises(ValidationError, match=r"scale: \[5, 1\]"):
        endpoint("http://x", scale=(5, 1))
    with pytest.raises(ValidationError, match=r"prompt: judge prompt 'pairwise': a score prompt's user template "
                                              r"lacks \{response\} and has unknown \{response_a\}, \{response_b\}"):
        endpoint("http://x", prompt="pairwise")
    with pytest.raises(ValidationError, match="prompt: judge prompt 'nope.yaml' is neither a built-in one"):
        endpoint("http://x", prompt="nope.yaml")
    own = tmp_path / "mine.yaml"
    own.write_text("system: You are strict.\nuser: 'Q: {question}\n\nA: {response}\n\n{verdict_format}'\n")
    config = endpoint("http://x", prompt=str(own), scale=(0, 4))
    assert config.raw_inputs() == [str(own)]
    assert endpoint("http://x").prompt_name == "correctness" and endpoint("http://x", scale=(1, 10)).prompt_name == "quality"
    assert endpoint("http://x", mode="pairwise").prompt_name == "pairwise"
    for name in builtin_judge_prompts():  # every built-in prompt reads under its own mode
        read_judge_prompt(name, {"pairwise": "pairwise", "genselect": "genselect"}.get(name, "score"))


def test_score_against_reference_through_a_real_server():
    with FakeOpenAI(reply=correctness_judge) as server, Judge(endpoint(server.url, max_new_tokens=64)) as judge:
        verdicts = judge.judge(["2+3?", "2+4?", "3+3?"], ["It is 5", "It is 7", "6"], ["5", "6", "6"])
        assert [v.reward for v in verdicts] == [1.0, 0.0, 1.0] and not malformed_counts(verdicts)
        path, body = next(r for r in server.requests if "2+3?" in r[1]["messages"][-1]["content"])
        assert path == "/v1/chat/completions" and body["max_tokens"] == 64 and body["temperature"] == 0.0
        user = body["messages"][-1]["content"]
        assert "Question:\n2+3?" in user and "Reference answer:\n5" in user
        assert user.endswith('End your reply with one line that says exactly "Verdict: correct" or "Verdict: incorrect".')
        described = judge.describe()
        assert described["model"] == "judge-model" and described["prompt"] == "correctness"
        assert described["prompt_digest"].startswith("sha256:")
        with pytest.raises(Exception, match="compares with a reference answer"):
            judge.judge(["q"], ["r"])


def test_pairwise_both_orders_cancel_position_bias():
    def fair(prompt: str) -> str:  # prefers the response that says "good", wherever it is shown
        a, b = between(prompt, "Response A:", "Response B:"), between(prompt, "Response B:", "End your")
        return "Verdict: " + ("A" if "good" in a and "good" not in b else "B" if "good" in b and "good" not in a else "tie")

    questions, responses, references = ["q1", "q2", "q3"], ["good answer", "bad answer", "good"], ["bad", "good", "good"]
    with FakeOpenAI(reply=fair) as server, Judge(endpoint(server.url, mode="pairwise", both_orders=True)) as judge:
        verdicts = judge.judge(questions, responses, references)
        assert [(v.preferred, v.reward) for v in verdicts] == [("response", 1.0), ("reference", 0.0), ("tie", 0.5)]
        assert len(server.requests) == 6  # each pair in both orders
    with FakeOpenAI(reply=lambda prompt: "Verdict: A") as server:
        with Judge(endpoint(server.url, mode="pairwise", both_orders=True)) as judge:
            biased = judge.judge(questions, responses, references)
        with Judge(endpoint(server.url, mode="pairwise")) as judge:
            one_order = judge.judge(questions, responses, references)
    assert [v.preferred for v in biased] == ["tie"] * 3  # a judge that always picks A disagrees with itself
    assert [v.preferred for v in one_order] == ["response"] * 3


def test_a_garbage_judge_is_counted_malformed_and_the_budget_enforced():
    replies = ["Verdict: correct", "the answer looks right to me", "", "Score: 5"]
    questions = [f"question {i}" for i in range(20)]
    with FakeOpenAI(reply=lambda prompt: replies[int(between(prompt, "Question:\nquestion", "Reference")) % 4]) as server:
        with Judge(endpoint(server.url, error_budget=0.75)) as judge:
            verdicts = judge.judge(questions, ["r"] * 20, ["r"] * 20)
            assert malformed_counts(verdicts) == {"no_verdict": 10, "empty": 5}
            assert [v.reward for v in verdicts[:4]] == [1.0, None, None, None]
            judge.check_budget(verdicts, "stages.evaluate.benchmarks[0]")  # 75% is within 75%
        over = r"^stages.evaluate.benchmarks\[0\]: 15 of 20 judge verdicts malformed"
        with Judge(endpoint(server.url, error_budget=0.5)) as judge, pytest.raises(JudgeBudgetError, match=over):
            judge.check_budget(verdicts, "stages.evaluate.benchmarks[0]")


def test_in_process_tiny_random_model(chat_checkpoint):
    """A random-weight judge through transformers: the plumbing runs (chat template, batch, parse) and every reply,
    being noise cut at the token limit, is malformed (`truncated`) rather than read as a verdict."""
    model_dir = chat_checkpoint.path / "model"
    config = JudgeConfig(generator={"kind": "transformers", "model_dir": str(model_dir), "batch_size": 4},
                         scale=(1, 10), max_new_tokens=8)
    with Judge(config) as judge:
        verdicts = judge.judge(["1+1?", "2+2?", "3+3?"], ["2", "4", "7"])
        described = judge.describe()
    # noise to the token limit: no verdict line came, and the reason says why (raise max_new_tokens)
    assert [(v.reward, v.malformed) for v in verdicts] == [(None, "truncated")] * 3
    assert malformed_counts(verdicts) == {"truncated": 3}
    assert described["kind"] == "transformers" and re.fullmatch(r"(fingerprint|sha256):\w+", described["digest"])
    assert judge.generator is None  # closed on exit
