"""Any OpenAI-compatible endpoint as a text generator: concurrent requests, retries with backoff."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from email.utils import parsedate_to_datetime
from typing import Any

from factory.errors import ServiceError
from factory.generate.params import GenerationParams, Prompt, cut_at_stop
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
                 max_backoff_s: float = 60.0):
        import httpx  # loading a spec imports this module (GeneratorSettings.open names it); httpx only when used

        # Accept "http://host:8000", "http://host:8000/" and "http://host:8000/v1" alike.
        root = base_url.rstrip("/")
        self.base_url = root[: -len("/v1")] if root.endswith("/v1") else root
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

    def close(self) -> None:
        self._client.close()

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        # One job per chat prompt; plain prompts grouped `batch_size` to a request.
        jobs: list[tuple[str, dict[str, Any], list[int]]] = []
        plain = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                jobs.append(("/v1/chat/completions", {"messages": p, **self._sampling(params)}, [i]))
        per_request = 1 if self.one_prompt_per_request else self.batch_size
        for start in range(0, len(plain), per_request):
            rows = plain[start : start + per_request]
            prompt: str | list[str] = prompts[rows[0]] if len(rows) == 1 else [prompts[i] for i in rows]
            jobs.append(("/v1/completions", {"prompt": prompt, **self._sampling(params)}, rows))

        out: list[str | None] = [None] * len(prompts)
        stop = threading.Event()  # set on the first failure so queued jobs give up instead of retrying
        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="openai") as pool:
            futures = {pool.submit(self._post, path, body, len(rows), stop): rows for path, body, rows in jobs}
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in done if f.exception() is not None]
            if errors:
                for f in pending:
                    f.cancel()
                raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
        for future, rows in futures.items():
            for i, text in zip(rows, future.result()):
                out[i] = cut_at_stop(text, params.stop)
        return [text or "" for text in out]

    def _sampling(self, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature, "seed": params.seed, "n": 1}
        if not params.greedy:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def _post(self, path: str, body: dict[str, Any], n: int, stop: threading.Event) -> list[str]:
        """POST one request, retrying transient failures; the completions' texts in prompt order."""
        try:
            try:
                return self._post_with_retries(self.base_url + path, body, n, stop)
            except _Refused:
                if not isinstance(body.get("prompt"), list):
                    raise
            if not self.one_prompt_per_request:
                self.one_prompt_per_request = True
                self.log.warning("prompt_lists_refused", url=self.base_url + path,
                                 action="sending one prompt per request from now on")
            return [self._post_with_retries(self.base_url + path, {**body, "prompt": p}, 1, stop)[0] for p in body["prompt"]]
        except _Cancelled:
            raise
        except Exception:
            stop.set()  # before this thread can pick up the next queued request
            raise

    def _post_with_retries(self, url: str, body: dict[str, Any], n: int, stop: threading.Event) -> list[str]:
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
                    return self._texts(url, response, n)
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
    def _texts(url: str, response, n: int) -> list[str]:
        try:
            choices = sorted(response.json()["choices"], key=lambda c: c.get("index", 0))
            if "message" in choices[0]:
                texts = [(c["message"].get("content") or "") for c in choices]
            else:
                texts = [c.get("text") or "" for c in choices]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            raise ServiceError(f"{url}: answer is not an OpenAI completion ({type(err).__name__}: {err})") from None
        if len(texts) != n:
            raise ServiceError(f"{url}: expected {n} choices, got {len(texts)}")
        return texts


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
