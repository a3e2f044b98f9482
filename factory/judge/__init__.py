"""Generative judges: a judge model reached through the generator interface (a local model folder; without one, the
step's `judge` input, e.g. an imported model; or an OpenAI-compatible endpoint) reads a prompt file and answers with a
verdict in one documented format. Evaluate scores judge benchmarks with it, preference takes its pairs from it (GenRM),
rl uses it as a reward.

    from factory.judge import Judge, JudgeConfig
    config = JudgeConfig(generator={"kind": "transformers", "model_dir": "judge/model"}, mode="score", scale=(1, 10))
    with Judge(config) as judge:
        verdicts = judge.judge(["What is 2+3?"], ["5, since 2+3=5."])
    verdicts[0].reward, verdicts[0].malformed, verdicts[0].raw

Modes, verdict lines and malformed reasons: `factory.judge.verdicts`; prompt files: `factory.judge.prompt_file`.
Importing this package loads no torch (the generator loads its model when the judge is opened).
"""

from factory.judge.config import JudgeConfig
from factory.judge.judge import Judge, model_digest, model_identity
from factory.judge.prompt_file import JudgePrompt, builtin_judge_prompts, read_judge_prompt
from factory.judge.verdicts import (
    MALFORMED_REASONS,
    JudgeBudgetError,
    Verdict,
    check_error_budget,
    malformed_counts,
    parse_pairwise,
    parse_score,
    verdict_format,
)

__all__ = ["MALFORMED_REASONS", "Judge", "JudgeBudgetError", "JudgeConfig", "JudgePrompt", "Verdict",
           "builtin_judge_prompts", "check_error_budget", "malformed_counts", "model_digest", "model_identity",
           "parse_pairwise", "parse_score", "read_judge_prompt", "verdict_format"]
