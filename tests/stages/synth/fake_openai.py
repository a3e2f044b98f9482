"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests (standard library only).

Implements POST /v1/chat/completions and /v1/completions with deterministic replies, can fail the first
N requests (429/503 with Retry-After) or every request, can delay answers, and records every request and
the most requests it had in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def echo_reply(text: str) -> str:
    """The default deterministic reply: the prompt's text behind a marker."""
    return f"echo: {text}"


class FakeOpenAI:
    """Start with `with FakeOpenAI(...) as server:`; `server.url` is its base address."""

    def __init__(self, reply: Callable[[str], str] = echo_reply, fail_first: int = 0, fail_status: int = 503,
                 retry_after: str | None = "0", always_fail_status: int | None = None,
                 delay_s: float | Callable[[str], float] = 0.0):
        self.reply = reply
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.always_fail_status = always_fail_status
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (path, body) of every request, failed ones too
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        """(status, headers, JSON body) for one request; called with the request counted in flight."""
        with self.lock:
            self.requests.append((path, body))
            number = len(self.requests)
        status = self.always_fail_status or (self.fail_status if number <= self.fail_first else None)
        if status:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return status, headers, {"error": {"message": f"fake failure {number}"}}
        if path == "/v1/chat/completions":
            text = body["messages"][-1]["content"]
            self._wait(text)
            choices = [{"index": 0, "message": {"role": "assistant", "content": self.reply(text)}, "finish_reason": "stop"}]
        elif path == "/v1/completions":
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            for p in prompts:
                self._wait(p)
            # Choices come back in reverse, as a server may finish them out of order; `index` says which is which.
            choices = [{"index": i, "text": self.reply(p), "finish_reason": "stop"} for i, p in enumerate(prompts)][::-1]
        else:
            return 404, {}, {"error": {"message": f"no route {path}"}}
        return 200, {}, {"id": f"cmpl-{number}", "object": "completion", "model": body.get("model"), "choices": choices}

    def _wait(self, text: str) -> None:
        delay = self.delay_s(text) if callable(self.delay_s) else self.delay_s
        if delay:
            time.sleep(delay)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        fake: FakeOpenAI = self.server.fake  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with fake.lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            status, headers, payload = fake.answer(self.path, body)
        finally:
            with fake.lock:
                fake.in_flight -= 1
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep test output clean
        pass
