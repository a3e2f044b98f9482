"""Any OpenAI-compatible endpoint as a text generator: concurrent requests, retries with backoff."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from email.utils import parsedate_to_datetime
from typing import Any

from factory.errors import ServiceError
from factory.generate.params import GenerationParams, Prompt, close_thinking, cut_at_stop
from factory.logs import get_logger

__all__ = ["OpenAIGenerator"]


_RETRY_STATUS = {408, 409, 425, 429}  # plus every 5xx


class _Cancelled(ServiceError):
    """A request not sent because another one had already failed."""


class _Refused(ServiceError):
    """The server answered a request with a 4xx that retrying cannot fix."""


class OpenAIGenerator:
    """Any OpenAI-compatible HTTP server (vLLM, NIM, TGI): chat prompts to /v1/chat/completions, plain
    prompts to /v1/completions (`batch_size` prompts per request there, since the OpenAI API takes a list).
    Not every server takes a list (`transformers serve` answers 400 "prompt must be a string"): when a
    list is refused, that request is sent again one prompt at a time, and every later request is too.

    Requests run on a pool of `max_concurrency` threads. A 429, a 5xx, a timeout or a dropped connection
    is retried up to `max_retries` times with exponential backoff and jitter, waiting at least what the
    server's `Retry-After` asks for (both capped at `max_backoff_s`); other 4xx answers fail at once. A failure raises one `ServiceError`
    that names the URL, and stops the requests not yet sent.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_concurrency: int = 8,
                 max_retries: int = 5, timeout_s: float = 120.0, batch_size: int = 16, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, render: Callable[[list, str | None], str] | None = None):
        import httpx  # loading a spec imports this module (GeneratorSettings.open names it); httpx only when used

        # Accept "http://host:8000", "http://host:8000/" and "http://host:8000/v1" alike.
        root = base_url.rstrip("/")
        self.base_url = root.removesuffix("/v1")
        self.model = self.model_id = model
        self.max_concurrency = max(1, max_concurrency)
        self.max_retries = max(0, max_retries)
        self.batch_size = max(1, batch_size)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            timeout=timeout_s, headers=headers,
            limits=httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency),
        )
        self._sleep = _sleep_unless_stopped  # (seconds, stop event); replaced in tests to record waits
        self._jitter = random.Random()
        self.log = get_logger("factory.generate.openai", base_url=self.base_url, model=model)
        self.attempts = 0  # HTTP requests sent, retries included
        self._lock = threading.Lock()
        self.one_prompt_per_request = False  # set when the server refused a list of prompts
        self.finish_reasons: list[str] = []  # per prompt of the last call: "stop" or "length"
        # (messages, reasoning) -> the served model's rendered prompt: lets a thinking budget continue a chat reply
        # as text on /v1/completions (factory.generate.transformers_model.render_chat with the model's tokenizer)
        self.render = render

    def close(self) -> None:
        self._client.close()

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        """One reply per prompt. With `params.thinking_budget`, in two passes as in-process: thinking up to the
        budget (stop at the end-of-thinking marker), then each reply not yet ended is continued with its think block
        closed, within `answer_budget`: a plain prompt as prompt + reply so far on /v1/completions; a chat prompt
        rendered by `render` (the served model's chat template, when set) + reply so far on /v1/completions, else as a
        final assistant message to continue (`continue_final_message`: vLLM's extension, which `transformers serve`
        refuses). `finish_reasons` records per prompt the server's "stop" or "length"."""
        if params.thinking_budget is None:
            done = self._generate(prompts, params)
            self.finish_reasons = ["length" if finish == "length" else "stop" for _, finish in done]
            return [cut_at_stop(text, params.stop) for text, _ in done]
        close = params.think_markers[1]
        first = params.model_copy(update={"max_new_tokens": params.thinking_budget, "stop": (close,)})
        replies, ended = [""] * len(prompts), [False] * len(prompts)
        if params.thinking_budget:
            for i, (text, finish) in enumerate(self._generate(prompts, first)):
                # the server drops the stop string: its `stop_reason` names it (vLLM); without one, a stop inside an
                # opened think block is taken for the marker
                closed = finish == "stop_string" or (finish == "stop" and params.think_markers[0] in text
                                                     and close not in text)
                replies[i] = text + close if closed else text
                ended[i] = finish in ("stop", "stop_string") and not closed
        answering = []
        for i, reply in enumerate(replies):
            if ended[i]:
                continue
            if close not in reply:
                replies[i] = close_thinking(reply, params) or reply
            answering.append(i)
        rest = params.model_copy(update={"max_new_tokens": params.answer_budget or params.max_new_tokens,
                                         "thinking_budget": None, "answer_budget": None, "bridge": ""})
        continued = [prompts[i] + replies[i] if isinstance(prompts[i], str) else
                     self.render(prompts[i], params.reasoning) + replies[i] if self.render is not None else
                     [*prompts[i], {"role": "assistant", "content": replies[i]}] for i in answering]
        for i, (text, finish) in zip(answering, self._generate(continued, rest)):
            replies[i], ended[i] = replies[i] + text, finish == "stop"
        self.finish_reasons = ["stop" if e else "length" for e in ended]
        return [cut_at_stop(text, params.stop) for text in replies]

    def _generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[tuple[str, str]]:
        """(text, finish reason) per prompt; a chat prompt ending in an assistant message is continued."""
        # One job per chat prompt; plain prompts grouped `batch_size` to a request.
        jobs: list[tuple[str, dict[str, Any], list[int]]] = []
        plain = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                body = {"messages": p, **self._sampling(params)}
                if params.reasoning is not None:  # vLLM's and SGLang's way to the template's switch
                    body["chat_template_kwargs"] = {"enable_thinking": params.reasoning == "on"}
                if p and p[-1]["role"] == "assistant":
                    body |= {"continue_final_message": True, "add_generation_prompt": False}
                jobs.append(("/v1/chat/completions", body, [i]))
        per_request = 1 if self.one_prompt_per_request else self.batch_size
        for start in range(0, len(plain), per_request):
            rows = plain[start : start + per_request]
            prompt: str | list[str] = prompts[rows[0]] if len(rows) == 1 else [prompts[i] for i in rows]
            jobs.append(("/v1/completions", {"prompt": prompt, **self._sampling(params)}, rows))

        out: list[tuple[str, str]] = [("", "stop")] * len(prompts)
        stop = threading.Event()  # set on the first failure so queued jobs give up instead of retrying
        keep = params.think_markers if params.keeps_thinking else None
        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="openai") as pool:
            futures = {pool.submit(self._post, path, body, len(rows), stop, keep): rows for path, body, rows in jobs}
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in done if f.exception() is not None]
            if errors:
                for f in pending:
                    f.cancel()
                raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
        for future, rows in futures.items():
            for i, (text, finish) in zip(rows, future.result()):
                out[i] = (text or "", finish)
        return out

    def _sampling(self, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature, "seed": params.seed, "n": 1}
        if not params.greedy:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def _post(self, path: str, body: dict[str, Any], n: int, stop: threading.Event,
              keep: tuple[str, str] | None = None) -> list[tuple[str, str]]:
        """POST one request, retrying transient failures; the completions' (text, finish reason) in prompt order."""
        try:
            try:
                return self._post_with_retries(self.base_url + path, body, n, stop, keep)
            except _Refused:
                if not isinstance(body.get("prompt"), list):
                    raise
            if not self.one_prompt_per_request:
                self.one_prompt_per_request = True
                self.log.warning("prompt_lists_refused", url=self.base_url + path,
                                 action="sending one prompt per request from now on")
            return [self._post_with_retries(self.base_url + path, {**body, "prompt": p}, 1, stop, keep)[0]
                    for p in body["prompt"]]
        except _Cancelled:
            raise
        except Exception:
            stop.set()  # before this thread can pick up the next queued request
            raise

    def _post_with_retries(self, url: str, body: dict[str, Any], n: int, stop: threading.Event,
                           keep: tuple[str, str] | None = None) -> list[tuple[str, str]]:
        import httpx  # see __init__

        last = ""
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                raise _Cancelled(f"{url}: cancelled after another request failed")
            retry_after = None
            try:
                with self._lock:
                    self.attempts += 1
                response = self._client.post(url, json=body)
            except httpx.TransportError as err:  # refused, reset, timed out
                last = f"{type(err).__name__}: {err}"
            else:
                if response.status_code == 200:
                    return self._texts(url, response, n, keep)
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code not in _RETRY_STATUS:
                    raise _Refused(f"{url}: the server refused the request ({last}); check the model name, "
                                       "API key and request parameters")
                retry_after = _retry_after_s(response.headers.get("retry-after"))
            if attempt == self.max_retries:
                break
            backoff = self.backoff_s * 2**attempt * (0.5 + 0.5 * self._jitter.random())
            delay = min(max(backoff, retry_after or 0.0), self.max_backoff_s)
            self.log.warning("generation_retry", url=url, attempt=attempt + 1, error=last, wait_s=round(delay, 2))
            self._sleep(delay, stop)
        raise ServiceError(f"{url}: no answer after {self.max_retries + 1} attempts (last: {last}); "
                           "check that the server is up and reachable")

    @staticmethod
    def _texts(url: str, response, n: int, keep: tuple[str, str] | None = None) -> list[tuple[str, str]]:
        """(text, finish reason) of each choice. With `keep` (the think markers), a server that parses the reasoning
        out of a chat reply (`reasoning_content`, vLLM's reasoning parsers, transformers serve's response template)
        has it written back as the think block before the content, as the model wrote it."""
        try:
            choices = sorted(response.json()["choices"], key=lambda c: c.get("index", 0))
            if "message" in choices[0]:
                texts = []
                for c in choices:
                    content = c["message"].get("content") or ""
                    thinking = c["message"].get("reasoning_content") or c["message"].get("reasoning")
                    if keep is not None and thinking is not None:
                        content = f"{keep[0]}\n{thinking.strip()}\n{keep[1]}\n\n{content.lstrip()}"
                    texts.append(content)
            else:
                texts = [c.get("text") or "" for c in choices]
            # "stop_string": stopped at one of the request's stop strings (vLLM's `stop_reason`), not at the end
            finishes = ["stop_string" if isinstance(c.get("stop_reason"), str) else c.get("finish_reason") or "stop"
                        for c in choices]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            raise ServiceError(f"{url}: answer is not an OpenAI completion ({type(err).__name__}: {err})") from None
        if len(texts) != n:
            raise ServiceError(f"{url}: expected {n} choices, got {len(texts)}")
        return list(zip(texts, finishes))


def _sleep_unless_stopped(seconds: float, stop: threading.Event) -> None:
    """Back off, but wake at once when another request has failed and the whole call is ending."""
    stop.wait(seconds)


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
