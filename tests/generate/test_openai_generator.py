"""OpenAIGenerator against a real HTTP server on 127.0.0.1: order, concurrency, retries, failures."""

from __future__ import annotations

import pytest

from factory.errors import ServiceError
from factory.generate import GenerationParams, OpenAIGenerator
from tests.spine import free_port
from tests.stages.synth.fake_openai import FakeOpenAI

PARAMS = GenerationParams(max_new_tokens=16)


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def make(server: FakeOpenAI, **kwargs) -> tuple[OpenAIGenerator, list[float]]:
    """A generator on `server` whose backoff waits are recorded, not slept."""
    kwargs = {"max_concurrency": 4, "max_retries": 3, "timeout_s": 10.0, "backoff_s": 0.01, **kwargs}
    gen = OpenAIGenerator(server.url, "fake-model", **kwargs)
    waits: list[float] = []
    gen._sleep = lambda seconds, stop: waits.append(seconds)
    return gen, waits


def test_chat_outputs_in_input_order_and_concurrency_limit_used_not_exceeded():
    # Earlier prompts answer slower, so completions finish in reverse of submission order.
    n = 12
    with FakeOpenAI(delay_s=lambda text: 0.02 * (n - int(text.split()[-1]))) as server:
        gen, _ = make(server, max_concurrency=3)
        out = gen.generate([chat(f"prompt {i}") for i in range(n)], PARAMS)
    assert out == [f"echo: prompt {i}" for i in range(n)]
    assert len(server.requests) == n
    assert 1 < server.max_in_flight <= 3
    path, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert body["model"] == "fake-model" and body["max_tokens"] == 16 and body["temperature"] == 0.0


def test_plain_prompts_batched_into_completions_requests_in_order():
    with FakeOpenAI(delay_s=0.01) as server:
        gen, _ = make(server, batch_size=3, max_concurrency=2)
        out = gen.generate([f"text {i}" for i in range(10)], PARAMS)
    assert out == [f"echo: text {i}" for i in range(10)]
    # a lone prompt goes as a string, which every server takes; groups as the OpenAI API's list
    assert sorted(len(body["prompt"]) if isinstance(body["prompt"], list) else 1 for _, body in server.requests) == [1, 3, 3, 3]
    assert {path for path, _ in server.requests} == {"/v1/completions"}
    assert server.max_in_flight <= 2


def test_mixed_chat_and_plain_prompts_keep_order():
    with FakeOpenAI() as server:
        gen, _ = make(server, batch_size=2)
        out = gen.generate(["a", chat("b"), "c", chat("d"), "e"], PARAMS)
    assert out == ["echo: a", "echo: b", "echo: c", "echo: d", "echo: e"]


def test_no_prompts_no_requests():
    with FakeOpenAI() as server:
        gen, _ = make(server)
        assert gen.generate([], PARAMS) == []
    assert server.requests == []


def test_stop_strings_sent_and_applied():
    with FakeOpenAI(reply=lambda text: f"{text} END trailing") as server:
        gen, _ = make(server)
        out = gen.generate([chat("keep this")], GenerationParams(stop=(" END",)))
    assert out == ["keep this"]
    assert server.requests[0][1]["stop"] == [" END"]


@pytest.mark.parametrize("status", [429, 503])
def test_transient_failures_are_retried_honouring_retry_after(status):
    with FakeOpenAI(fail_first=3, fail_status=status, retry_after="2") as server:
        gen, waits = make(server, max_retries=5, max_concurrency=1)
        out = gen.generate([chat("hello")], PARAMS)
    assert out == ["echo: hello"]
    assert len(server.requests) == 4 and gen.attempts == 4  # 3 failures + 1 success
    assert len(waits) == 3 and all(w >= 2.0 for w in waits)  # Retry-After: 2 wins over the 10 ms backoff


def test_backoff_grows_exponentially_without_retry_after():
    with FakeOpenAI(fail_first=3, retry_after=None) as server:
        gen, waits = make(server, max_retries=3, max_concurrency=1, backoff_s=1.0)
        assert gen.generate([chat("x")], PARAMS) == ["echo: x"]
    # attempt k waits backoff * 2**k * jitter, jitter in [0.5, 1]
    assert [0.5 * 2**k <= w <= 2**k for k, w in enumerate(waits)] == [True, True, True]


def test_permanent_failure_raises_one_error_naming_the_url():
    with FakeOpenAI(always_fail_status=503) as server:
        gen, _ = make(server, max_retries=2, max_concurrency=1)
        with pytest.raises(ServiceError) as err:
            gen.generate([chat(f"p{i}") for i in range(5)], PARAMS)
    assert f"{server.url}/v1/chat/completions" in str(err.value)
    assert "3 attempts" in str(err.value)
    # The first prompt used up its attempts; the others were cancelled instead of retried.
    assert len(server.requests) == 3


def test_client_error_is_not_retried():
    with FakeOpenAI(always_fail_status=400) as server:
        gen, waits = make(server)
        with pytest.raises(ServiceError, match="refused the request.*HTTP 400"):
            gen.generate([chat("x")], PARAMS)
    assert len(server.requests) == 1 and waits == []


def test_unreachable_server_names_the_url():
    port = free_port()  # no listener there
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.0)
    gen._sleep = lambda seconds, stop: None
    with pytest.raises(ServiceError, match=rf"http://127.0.0.1:{port}/v1/chat/completions: no answer after 2 attempts"):
        gen.generate([chat("x")], PARAMS)
    assert gen.attempts == 2
