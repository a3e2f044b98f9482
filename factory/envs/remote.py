"""An environment behind HTTP: a small JSON protocol in NeMo-Gym's shape (reset with a task, step with a response).

The protocol (every body is JSON; `python -m factory.envs.serve` is a reference server):

    GET  /info    -> {"name": str, "train": int, "heldout": int}
                     how many tasks each pool holds; task i of a pool is the same task every time it is posed
    POST /reset   {"split": "train" | "heldout", "index": int}
                  -> {"episode": str, "messages": [{"role": "user", "content": str}, ...]}
                     opens an episode on task `index` and gives its prompt (chat turns, no system turn: the trainer
                     adds the reasoning switch); the episode id is the server's, unique while it is open
    POST /step    {"episode": str, "response": str}
                  -> {"reward": float, "done": true}
                   | {"reward": null, "done": false, "observation": str}
                     scores one assistant turn; an unfinished episode gives the next observation (a tool turn),
                     which the trainer appends as a `tool` message and masks out of the loss. A finished episode
                     is closed on the server.

A connection that fails, or a 5xx answer, is retried (`retries` times, backing off 0.2 s, 0.4 s, ...). A server
that still cannot be reached is gone (`EnvironmentGone`): the trainer drops it from the mixture with one log line
and goes on. A server that still answers 5xx, or answers 4xx, costs that sample (`raised`); a body that is not the
shape above costs it too (`malformed`; `raised` when it is not JSON), as does a request past `limits.timeout_s`
(`timeout`).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from factory.envs.config import EnvironmentConfig
from factory.envs.environment import Environment, EnvironmentGone, Episode, Outcome, Split

__all__ = ["RemoteEnvironment"]


class RemoteEnvironment(Environment):
    """A client of the protocol above."""

    def __init__(self, config: EnvironmentConfig, **context: Any) -> None:
        super().__init__(config)
        self.url = (config.url or "").rstrip("/")
        self.client = httpx.Client(timeout=config.limits.timeout_s)
        self.info = self._request("GET", "/info")
        for split in ("train", "heldout"):
            if not isinstance(self.info.get(split), int) or self.info[split] < 0:
                raise EnvironmentGone(f"{self.url}/info: {split!r} must be a task count, got {self.info.get(split)!r}")

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        last, reached = "", False
        for attempt in range(self.config.url_retries + 1):
            if attempt:
                time.sleep(0.2 * 2 ** (attempt - 1))
            try:
                response = self.client.request(method, self.url + path, json=body)
            except httpx.TimeoutException:
                raise TimeoutError(f"{self.url}{path}: no answer within {self.config.limits.timeout_s:g} s") from None
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if response.status_code >= 500:
                last, reached = f"HTTP {response.status_code}: {response.text[:200]}", True
                continue
            if response.status_code >= 300:
                raise ValueError(f"{self.url}{path}: HTTP {response.status_code}: {response.text[:200]}")
            try:
                data = response.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise ValueError(f"{self.url}{path}: the answer is not a JSON object")
            return data
        if reached:  # it answers, but fails on this request: the sample is lost, the environment stays
            raise RuntimeError(f"{self.url}{path}: {last} (after {self.config.url_retries} retries)")
        raise EnvironmentGone(f"{self.url}{path}: {last} (after {self.config.url_retries} retries)")

    def size(self, split: Split) -> int:
        return int(self.info[split])

    def reset(self, split: Split, index: int) -> Episode:
        data = self._request("POST", "/reset", {"split": split, "index": index})
        messages = data.get("messages")
        if not isinstance(data.get("episode"), str) or not isinstance(messages, list) or not messages or \
                not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
            raise ValueError(f"{self.url}/reset: expected {{episode, messages: [{{role, content}}, ...]}}")
        return Episode(f"{self.name}-{split}-{index}", [dict(m) for m in messages], state=data["episode"])

    def step(self, episode: Episode, response: str) -> Outcome:
        data = self._request("POST", "/step", {"episode": episode.state, "response": response})
        episode.turns += 1
        done = data.get("done")
        if done is False:
            return Outcome(done=False, observation=data.get("observation"))
        return Outcome(reward=data.get("reward"), done=done)  # checked by the caller (guarded_step)

    def close(self) -> None:
        self.client.close()
