"""Text generators for synthetic data: a local transformers model, or any OpenAI-compatible endpoint.

Both take a list of prompts and return one completion per prompt, in input order:

    params = GenerationParams(max_new_tokens=256, temperature=0.0)
    TransformersGenerator("runs/model").generate([[{"role": "user", "content": "Hi"}]], params)
    OpenAIGenerator("http://vllm:8000", "nvidia/model").generate(["Once upon a time"], params)

A prompt is either a chat conversation (a list of {"role", "content"} messages) or a plain string.
Chat conversations go through the tokenizer's chat template (local model) or `/v1/chat/completions`
(endpoint); plain strings are completed as they are (`/v1/completions` on an endpoint).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field

from factory.errors import InputError, ServiceError
from factory.logs import get_logger

Message = dict[str, str]
Prompt = Union[str, list[Message]]

__all__ = ["GenerationParams", "Generator", "TransformersGenerator", "OpenAIGenerator", "flatten_chat"]


class GenerationParams(BaseModel):
    """How to sample a completion; the same meaning for every generator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(512, ge=1, description="Most tokens generated per prompt.")
    temperature: float = Field(0.0, ge=0.0, description="Sampling temperature; 0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (used only when sampling).")
    seed: int = Field(0, description="Random seed of sampling (local model: torch seed; endpoint: request seed).")
    stop: tuple[str, ...] = Field((), description="Strings that end a completion; the stop string is not kept.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class Generator(Protocol):
    """Anything that turns prompts into completions, one per prompt, in input order."""

    model_id: str

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]: ...


def flatten_chat(messages: list[Message]) -> str:
    """A conversation as plain text, for models without a chat template: the contents, blank-line separated."""
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


class TransformersGenerator:
    """A local causal LM loaded from a `save_pretrained` folder (never downloads), generating in batches.

    Prompts are left-padded so that every row's new tokens start at the same column; prompts are
    sorted by length before batching so that rows in a batch need little padding.
    """

    def __init__(self, model_dir: str | Path, device: str = "cpu", batch_size: int = 8, dtype: str | None = None,
                 model_id: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise InputError(f"{model_dir}: not a model folder (no config.json); point model_dir at a save_pretrained folder")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs: dict[str, Any] = {"local_files_only": True}
        if dtype is not None:
            kwargs["dtype"] = getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        # What output metadata names as the generator: given (an artifact's URI), else the folder's name,
        # never the local path, which means nothing on another machine.
        self.model_id = model_id or model_dir.resolve().name

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, prompt: Prompt) -> str:
        """The exact text the model is conditioned on: chat template when there is one, else plain text."""
        if isinstance(prompt, str):
            return prompt
        if self.has_chat_template:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return flatten_chat(prompt)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        import torch

        texts = [self.render(p) for p in prompts]
        # A chat template usually writes the BOS itself; adding special tokens again would double it.
        add_special = not self.has_chat_template
        lengths = [len(self.tokenizer(t, add_special_tokens=add_special)["input_ids"]) for t in texts]
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context and lengths and max(lengths) + params.max_new_tokens > context:
            raise InputError(f"a prompt of {max(lengths)} tokens + max_new_tokens {params.max_new_tokens} exceeds the "
                             f"model's context of {context} tokens; lower chunk_size (chunk_unit 'tokens' bounds it "
                             "exactly) or max_new_tokens")
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        out: list[str] = [""] * len(texts)
        sampling: dict[str, Any] = {"do_sample": False}
        if not params.greedy:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True,
                                   add_special_tokens=add_special).to(self.device)
            # generate() samples from torch's global generator; seeding per batch makes a run repeatable.
            torch.manual_seed(params.seed + start)
            with torch.no_grad():
                ids = self.model.generate(  # (rows, prompt_len + new_len)
                    **batch, max_new_tokens=params.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id, **sampling,
                )
            new = ids[:, batch["input_ids"].shape[1] :]  # (rows, new_len): left padding aligns the prompts' ends
            for i, text in zip(rows, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[i] = _cut_at_stop(text, params.stop)
        return out


_RETRY_STATUS = {408, 409, 425, 429}  # plus every 5xx


class _Cancelled(ServiceError):
    """A request not sent because another one had already failed."""


class OpenAIGenerator:
    """Any OpenAI-compatible HTTP server (vLLM, NIM, TGI): chat prompts to /v1/chat/completions, plain
    prompts to /v1/completions (`batch_size` prompts per request there, since that endpoint takes a list).

    Requests run on a pool of `max_concurrency` threads. A 429, a 5xx, a timeout or a dropped connection
    is retried up to `max_retries` times with exponential backoff and jitter, waiting at least what the
    server's `Retry-After` asks for (both capped at `max_backoff_s`); other 4xx answers fail at once. A failure raises one `ServiceError`
    that names the URL, and stops the requests not yet sent.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_concurrency: int = 8,
                 max_retries: int = 5, timeout_s: float = 120.0, batch_size: int = 16, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0):
        import httpx

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
        self.log = get_logger("factory.synth.openai", base_url=self.base_url, model=model)
        self.attempts = 0  # HTTP requests sent, retries included
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        # One job per chat prompt; plain prompts grouped `batch_size` to a request.
        jobs: list[tuple[str, dict[str, Any], list[int]]] = []
        plain = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                jobs.append(("/v1/chat/completions", {"messages": p, **self._sampling(params)}, [i]))
        for start in range(0, len(plain), self.batch_size):
            rows = plain[start : start + self.batch_size]
            jobs.append(("/v1/completions", {"prompt": [prompts[i] for i in rows], **self._sampling(params)}, rows))

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
                out[i] = _cut_at_stop(text, params.stop)
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
            return self._post_with_retries(self.base_url + path, body, n, stop)
        except _Cancelled:
            raise
        except Exception:
            stop.set()  # before this thread can pick up the next queued request
            raise

    def _post_with_retries(self, url: str, body: dict[str, Any], n: int, stop: threading.Event) -> list[str]:
        import httpx

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
                    raise ServiceError(f"{url}: the server refused the request ({last}); check the model name, "
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
