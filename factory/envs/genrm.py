"""A generative reward model as an environment's scorer (`scorer: judge`): the judge (`factory.judge`) reads the
task's question, the reply's final answer and the task's reference (a reference answer in mode score, a reference
response in mode pairwise, Nemotron 3's GenRM shape), and its parsed verdict is the reward. A malformed verdict
has no reward: the sample is lost (counted as `malformed` within the rl step's error budget), never guessed. A judge of
kind transformers without model_dir is the rl step's `judge` input (an imported model), whose folder the step gives it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from factory.chat.thinking import final_answer
from factory.errors import SpecError
from factory.judge import Judge, JudgeConfig

__all__ = ["JudgeScorer", "open_judge"]


class JudgeScorer:
    """A judge open for the run: rewards for (question, reply, reference) triples."""

    def __init__(self, config: JudgeConfig) -> None:
        self.judge = Judge(config).__enter__()

    def rewards(self, questions: Sequence[str], replies: Sequence[str], references: Sequence[Any]) -> list[float | None]:
        refs = [r if isinstance(r, str) else json.dumps(r) for r in references]
        verdicts = self.judge.judge(list(questions), [final_answer(r) for r in replies], refs)
        return [v.reward if v.malformed is None else None for v in verdicts]

    def close(self) -> None:
        self.judge.__exit__(None, None, None)


def open_judge(config: JudgeConfig) -> JudgeScorer:
    """The judge open for the run; one naming no model (kind transformers without model_dir) is refused: its model is
    an rl step's `judge` input, which the step substitutes before it opens its environments."""
    if config.from_input:
        raise SpecError("judge.generator: no model_dir, and no rl step's `judge` input gives it one; set the judge's "
                        "model folder, wire the step's `judge` input, or use generator kind openai")
    return JudgeScorer(config)
