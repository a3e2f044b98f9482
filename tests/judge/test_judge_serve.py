"""The judge against `transformers serve` (a real OpenAI-compatible server, on 127.0.0.1, CPU) serving a tiny
random-weight chat model: its verdicts are the in-process judge's, reply by reply, and noise is counted malformed."""

from __future__ import annotations

from factory.judge import Judge, JudgeConfig, malformed_counts
from tests.spine import transformers_serve

QUESTIONS = ["What is 2 + 3?", "What is 7 + 1?", "Name a river."]
RESPONSES = ["5", "It is 9.", "The Nile."]


def test_served_judge_gives_the_in_process_verdicts(chat_checkpoint, tmp_path):
    folder = str(chat_checkpoint.path / "model")
    shared = {"scale": (1, 10), "max_new_tokens": 8}
    with Judge(JudgeConfig(generator={"kind": "transformers", "model_dir": folder, "batch_size": 1}, **shared)) as judge:
        local = judge.judge(QUESTIONS, RESPONSES)
    with transformers_serve(folder, tmp_path / "serve.log") as url:
        config = JudgeConfig(generator={"kind": "openai", "base_url": url, "model": folder, "max_retries": 0}, **shared)
        with Judge(config) as judge:
            served = judge.judge(QUESTIONS, RESPONSES)
    assert [v.raw for v in served] == [v.raw for v in local] and all(v.raw for v in local)  # text, not empty
    assert [v.malformed for v in served] == [v.malformed for v in local]
    assert malformed_counts(served) == {"truncated": 3}  # a random model writes noise up to the token limit
