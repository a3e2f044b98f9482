"""Thinking budgets and the reasoning switch in both generators: a reply's thinking is cut at the budget, closed with the
end-of-thinking marker (after the bridge), and answered within answer_budget; a reasoning reply keeps its think block."""

from __future__ import annotations

import pytest

from factory.chat.template import THINK_CLOSE, THINK_OPEN
from factory.generate import GenerationParams, OpenAIGenerator, TransformersGenerator
from factory.generate.params import close_thinking
from tests.builders import additions, model_folder, tokenizer
from tests.stages.synth.fake_openai import FakeOpenAI

QUESTIONS = ["What is 3 + 4?", "What is 12 + 9?", "What is 40 + 2?"]


def chat(question: str, mode: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"detailed thinking {mode}"}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A tiny random NemotronH with the factory's chat tokenizer (think markers and end of turn are special tokens)."""
    texts = [f"{m.role}\n{m.content}" for c in additions(200, seed=5) for m in c.messages]
    return model_folder(tmp_path_factory.mktemp("chat-model"), tokenizer("chat", texts, vocab_size=400), "tiny")


def test_close_thinking_opens_when_reasoning_is_on_and_writes_the_bridge():
    on = GenerationParams(reasoning="on", thinking_budget=0, bridge="Time is up.")
    assert close_thinking("", on) == "<think>\nTime is up.\n</think>\n\n"
    assert close_thinking("<think>\n2 plus", on) == "<think>\n2 plus\nTime is up.\n</think>\n\n"
    assert close_thinking("The sum", GenerationParams(thinking_budget=4)) is None  # no thinking to close


def test_budget_cuts_thinking_closes_it_and_answers_within_the_answer_budget(chat_model):
    gen = TransformersGenerator(chat_model, batch_size=2)
    prompts = [chat(q, "on") for q in QUESTIONS]
    for budget in (0, 3, 8):
        params = GenerationParams(max_new_tokens=40, reasoning="on", thinking_budget=budget, answer_budget=6)
        replies = gen.generate(prompts, params)
        for reply, finish in zip(replies, gen.finish_reasons):
            assert reply.startswith(THINK_OPEN) and reply.count(THINK_CLOSE) == 1, reply
            assert finish in ("stop", "length")
        # the same as doing it by hand: think up to `budget` tokens, close, continue the rendered prompt for 6 tokens
        # (token counts are not re-measured on the text: a random model's byte-level pieces re-encode longer)
        if budget:
            first = gen.generate(prompts, GenerationParams(max_new_tokens=budget, reasoning="on"))
        else:
            first = [""] * len(prompts)
        expected = []
        for prompt, partial in zip(prompts, first):
            closed = partial[: partial.index(THINK_CLOSE) + len(THINK_CLOSE)] if THINK_CLOSE in partial else \
                close_thinking(partial, params)
            rest = gen.generate([gen.render(prompt, "on") + closed], GenerationParams(max_new_tokens=6, reasoning="on"))
            expected.append(closed + rest[0])
        assert replies == expected
    zero = gen.generate(prompts, GenerationParams(max_new_tokens=40, reasoning="on", thinking_budget=0, answer_budget=6))
    assert all(r.startswith("<think>\n</think>\n\n") for r in zero)


def test_reasoning_replies_keep_the_think_markers_and_stop_at_the_end_of_turn(chat_model):
    gen = TransformersGenerator(chat_model, batch_size=3)
    prompts = [chat(q, "on") for q in QUESTIONS]
    kept = gen.generate(prompts, GenerationParams(max_new_tokens=24, reasoning="on"))
    plain = gen.generate(prompts, GenerationParams(max_new_tokens=24))
    assert all("<|im_end|>" not in r for r in kept)
    # the switch is the template's: enable_thinking renders what the system prompt renders
    assert gen.render(prompts[0], "on") == gen.render(prompts[0]) == gen.render([prompts[0][1]], "on")
    # without the switch the special tokens are dropped, as before
    assert all(THINK_OPEN not in r for r in plain)


class BudgetServer(FakeOpenAI):
    """The stand-in server, answering the thinking pass (the request with a stop string) with `finish`: "length" (the
    budget ran out) or "stop" naming the stop string it stopped at (`stop_reason`, as vLLM does)."""

    def __init__(self, reply, finish: str):
        super().__init__(reply=reply)
        self.finish = finish

    def answer(self, path, body):
        status, headers, out = super().answer(path, body)
        for choice in (out or {}).get("choices", []) if body.get("stop") else []:
            choice["finish_reason"] = self.finish
            if self.finish == "stop":
                choice["stop_reason"] = body["stop"][0]
        return status, headers, out


def test_openai_budget_continues_the_cut_reply_and_passes_the_switch():
    def reply(text: str) -> str:
        return "thinking on and on" if not text.endswith("\n\n") else "7"

    with BudgetServer(reply, "length") as server:
        gen = OpenAIGenerator(server.url, "m", max_retries=0)
        params = GenerationParams(max_new_tokens=30, reasoning="on", thinking_budget=5, answer_budget=4, bridge="Done.")
        out = gen.generate([chat("What is 3 + 4?", "on")], params)
        (_, first), (_, second) = server.requests
    gen.close()
    assert first["max_tokens"] == 5 and first["stop"] == [THINK_CLOSE]
    assert first["chat_template_kwargs"] == {"enable_thinking": True}
    # the budget ran out in a reply without its opening marker (a template may write it): the cut opens and closes one
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    assert second["messages"][-1] == {"role": "assistant", "content": "<think>\nthinking on and on\nDone.\n</think>\n\n"}
    assert second["max_tokens"] == 4
    assert out == ["<think>\nthinking on and on\nDone.\n</think>\n\n7"]
    assert gen.finish_reasons == ["stop"]


def test_openai_reply_that_closed_its_thinking_in_budget_answers_after_the_marker():
    def reply(text: str) -> str:
        return "<think>\nshort" if text.startswith("What") else "7"

    with BudgetServer(reply, "stop") as server:
        gen = OpenAIGenerator(server.url, "m", max_retries=0)
        out = gen.generate([chat("What is 3 + 4?", "on")], GenerationParams(max_new_tokens=30, thinking_budget=9))
        second = server.requests[1][1]
    gen.close()
    assert second["messages"][-1]["content"] == "<think>\nshort</think>"  # the marker the server stopped at, put back
    assert out == ["<think>\nshort</think>7"]
