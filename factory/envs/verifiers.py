"""Verifiable rewards (the built-in environments' scorers, rl's rewards): each prompt's `verifier` field picks one of
`factory.verify`'s verifiers, the ones evaluate scores with.

    with VerifierRewards(RewardConfig()) as rewards:
        scores = rewards.score(prompts, replies)     # one float in {0, 1} per (prompt, reply) pair

- `math`: math-verify on the reply's final answer (last `\\boxed{}` first), in worker processes with a hard
  timeout (`factory.verify.MathVerifier`).
- `code`: the reply's last fenced Python block (or the whole final answer), then the prompt's test code, run in
  the bubblewrap sandbox's test harness (`factory.verify.run_tests`); 1 only when every test statement ran to its
  end (a program that exits early, `sys.exit(0)` included, scores 0). The sandbox's own failure on one reply
  scores that reply 0, never the batch.
- `tool`: Tool-N1's binary reward (`check_tool_calls`): 1 only for `<think>...</think><tool_call>[...]</tool_call>`
  whose calls equal the ground truth's.
- `choice`: CrossThink's multiple choice (the gold letter) or open-ended (the normalised short answer).

The reward is binary, as AceReason, Tool-N1 and DAPO use it: a reply is right or it is not. For math, code
and choice only the final answer counts (the text after `</think>`, so a right answer written inside the
thinking and never stated does not score); the tool reward reads the whole reply, since its format
includes the think block. A reply cut at the length limit is scored like any other (it rarely has an
answer); the rl stage filters it out of the loss.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from factory.chat.records import Prompt
from factory.chat.thinking import final_answer
from factory.verify import (
    MathVerifier,
    SandboxConfig,
    check_choice,
    check_short_answer,
    check_tool_calls,
    run_many_tests,
)

__all__ = ["RewardConfig", "VerifierRewards", "code_of"]

_CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


class RewardConfig(BaseModel):
    """How the verifiers run when they score rollouts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    math_workers: int = Field(2, ge=1, description="Worker processes that run math-verify.")
    math_timeout_s: float = Field(10.0, gt=0, description="Hard timeout per math check; past it the reply scores 0.")
    code_workers: int = Field(2, ge=1, description="Sandboxes running at once for code rewards.")
    sandbox: SandboxConfig = Field(default_factory=lambda: SandboxConfig(timeout_s=10.0, cpu_s=10, memory_mb=512),
                                   description="Limits and isolation of the code sandbox.")


def code_of(reply: str) -> str:
    """The program a reply gives: its last fenced Python block, else its whole final answer."""
    final = final_answer(reply)
    blocks = _CODE_BLOCK.findall(final)
    return blocks[-1] if blocks else final


class VerifierRewards:
    """Scores replies with the verifier each prompt names; a context manager: the math worker processes
    live until it exits."""

    def __init__(self, config: RewardConfig | None = None) -> None:
        self.config = config or RewardConfig()
        self._math: MathVerifier | None = None

    def __enter__(self) -> VerifierRewards:
        return self  # the math workers start on the first math reply (a code-only run never pays for them)

    def _math_verifier(self) -> MathVerifier:
        if self._math is None:
            self._math = MathVerifier(workers=self.config.math_workers, timeout_s=self.config.math_timeout_s).__enter__()
        return self._math

    def __exit__(self, *exc: Any) -> None:
        if self._math is not None:
            self._math.__exit__(*exc)
            self._math = None

    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        """One reward in {0.0, 1.0} per pair, in order."""
        if len(prompts) != len(replies):
            raise ValueError(f"{len(prompts)} prompts but {len(replies)} replies")
        rewards = [0.0] * len(replies)
        by_kind: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            by_kind.setdefault(p.verifier, []).append(i)
        if rows := by_kind.get("math"):
            verdicts = self._math_verifier().check_many([(prompts[i].answer, final_answer(replies[i])) for i in rows])
            for i, v in zip(rows, verdicts):
                rewards[i] = float(v.correct)
        if rows := by_kind.get("code"):
            cases = [(code_of(replies[i]), prompts[i].answer) for i in rows]
            for i, v in zip(rows, run_many_tests(cases, self.config.sandbox, self.config.code_workers)):
                rewards[i] = float(v.passed)
        for i in by_kind.get("tool", []):
            rewards[i] = float(check_tool_calls(replies[i], prompts[i].answer).reward)
        for i in by_kind.get("choice", []):
            gold, options = prompts[i].answer["gold"], prompts[i].answer["options"]
            final = final_answer(replies[i])
            ok = check_choice(final, gold, options) if options else check_short_answer(final, gold)
            rewards[i] = float(ok)
        return rewards
