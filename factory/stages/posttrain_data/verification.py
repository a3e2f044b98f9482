"""Rejection sampling's judge: a candidate solution is kept only when its verifier accepts it.

    with Judge(workers=2, timeout_s=10, sandbox=SandboxConfig()) as judge:
        reasons = judge.check([(prompt, "on", reply), ...])     # "" = accepted, else why it was dropped

A reply must first obey its reasoning mode (`on`: a `<think>` block before the final answer; `off`: none),
then its final answer (the text after the think block) must pass the prompt's verifier: math-verify for
math, the option letter or a normalised short answer for CrossThink questions, Tool-N1's exact calls for
tool calls, the prompt's tests in the sandbox's test harness for code (every test statement run to its end). The reasons are the drop counters of stats.json.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from factory.chat.records import Prompt, Reasoning, split_thinking
from factory.verify.choice import (
    check_choice,
    check_short_answer,
    extract_choice,
    last_boxed,
)
from factory.verify.math_answer import MathVerifier
from factory.verify.sandbox import SandboxConfig, run_many_tests
from factory.verify.tool_calls import check_tool_calls

_CODE = re.compile(r"```(?:python|py)\n(.*?)```", re.DOTALL)


def mode_reason(reply: str, reasoning: Reasoning) -> str:
    """Why `reply` breaks its reasoning mode ("" when it does not)."""
    if not reply.strip():
        return "empty"
    thinking, final = split_thinking(reply)
    if reasoning == "on" and thinking is None:
        return "no_think_block"
    if reasoning == "off" and (thinking is not None or "<think>" in reply):
        return "think_when_off"
    if "<think>" in final or "</think>" in final:
        return "malformed_think"
    if not final:
        return "no_final_answer"
    return ""


def last_code_block(text: str) -> str | None:
    blocks = _CODE.findall(text)
    return blocks[-1] if blocks else None


def _math_reason(reason: str) -> str:
    if reason in ("no_answer", "timeout", "no_gold"):
        return reason
    return "unparseable" if reason.startswith("error") else "wrong_answer"


class Judge:
    """Checks candidates in batches: math in worker processes with a timeout, code in the sandbox."""

    def __init__(self, workers: int = 2, timeout_s: float = 10.0, sandbox: SandboxConfig | None = None):
        self.math = MathVerifier(workers=workers, timeout_s=timeout_s)
        self.workers = workers
        self.sandbox = sandbox or SandboxConfig()
        self._open = False

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc) -> None:
        if self._open:
            self.math.__exit__(*exc)
            self._open = False

    def _math(self, pairs: list[tuple[str, str]]):
        if not self._open:  # the worker pool starts only when a math answer needs checking
            self.math.__enter__()
            self._open = True
        return self.math.check_many(pairs)

    def check(self, candidates: Sequence[tuple[Prompt, Reasoning, str]]) -> list[str]:
        """One reason per candidate, in order: "" when its verifier accepts it."""
        reasons = [mode_reason(reply, mode) for _, mode, reply in candidates]
        math: list[int] = []
        code: list[tuple[int, tuple[str, str]]] = []  # (candidate, (solution, tests))
        for i, (prompt, _, reply) in enumerate(candidates):
            if reasons[i]:
                continue
            thinking, final = split_thinking(reply)
            if prompt.verifier == "math":
                math.append(i)
            elif prompt.verifier == "choice":
                gold, options = prompt.answer["gold"], prompt.answer["options"]
                if options:
                    ok = check_choice(final, gold, options)
                    answered = extract_choice(final, options) is not None
                else:
                    ok = check_short_answer(final, gold)
                    answered = last_boxed(final) is not None
                reasons[i] = "" if ok else ("wrong_answer" if answered else "no_answer")
            elif prompt.verifier == "tool":
                # Tool-N1's format opens with a think block; an `off` reply is the calls alone
                verdict = check_tool_calls(f"<think>{thinking or ''}</think>{final}", prompt.answer)
                reasons[i] = "" if verdict.reward else f"tool_{verdict.reason}"
            elif prompt.verifier == "code":
                solution = last_code_block(final)
                if solution is None:
                    reasons[i] = "no_code"
                else:
                    code.append((i, (solution, prompt.answer)))
        if math:
            verdicts = self._math([(candidates[i][0].answer, split_thinking(candidates[i][2])[1]) for i in math])
            for i, verdict in zip(math, verdicts):
                reasons[i] = "" if verdict.correct else _math_reason(verdict.reason)
        if code:
            verdicts = run_many_tests([case for _, case in code], self.sandbox, workers=self.workers)
            for (i, _), verdict in zip(code, verdicts):
                reasons[i] = "" if verdict.passed else ("tests_failed" if verdict.limit is None else f"limit_{verdict.limit}")
        return reasons
