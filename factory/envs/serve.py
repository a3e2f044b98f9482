"""A reference server of the HTTP environment protocol (`factory.envs.remote`): any environment, served.

    python -m factory.envs.serve --env '{"name": "ifeval", "instructions": {"size": 256}}' --port 8765
    # then, in an rl step:  environments: [{name: ifeval_http, url: "http://127.0.0.1:8765"}]

`--env` takes one environment's settings (`factory.envs.EnvironmentConfig`, JSON) of a built-in or a user's
(`module:`) environment; the server answers GET /info, POST /reset and POST /step, one thread per request, and
prints `serving http://HOST:PORT` once it listens (port 0: a free port). A step that raises answers HTTP 500;
an unknown episode, HTTP 404.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from factory.envs.config import EnvironmentConfig
from factory.envs.environment import Environment
from factory.envs.opener import open_environment

__all__ = ["main", "make_server"]


def make_server(env: Environment, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server of `env` on (host, port), not yet serving: call `serve_forever()` (in a thread, for a test)."""
    episodes: dict[str, Any] = {}
    lock = threading.Lock()
    ids = itertools.count()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # one line per request on stderr would drown a run's log
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/info":
                return self._answer(404, {"error": f"no route {self.path}"})
            self._answer(200, {"name": env.name, "train": env.size("train"), "heldout": env.size("heldout")})

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            except ValueError:
                return self._answer(400, {"error": "the body is not JSON"})
            try:
                if self.path == "/reset":
                    split, index = body.get("split"), body.get("index")
                    if split not in ("train", "heldout") or not isinstance(index, int) or \
                            not 0 <= index < env.size(split):
                        return self._answer(400, {"error": "reset takes {split: train|heldout, index: 0..size-1}"})
                    episode = env.reset(split, index)
                    with lock:
                        key = f"{env.name}-{next(ids)}"
                        episodes[key] = episode
                    return self._answer(200, {"episode": key, "messages": episode.messages})
                if self.path == "/step":
                    with lock:
                        episode = episodes.get(body.get("episode"))
                    if episode is None or not isinstance(body.get("response"), str):
                        return self._answer(404, {"error": "unknown episode (or no response text)"})
                    outcome = env.step(episode, body["response"])
                    episode.messages += [{"role": "assistant", "content": body["response"]}]
                    if outcome.done:
                        with lock:
                            episodes.pop(body["episode"], None)
                        return self._answer(200, {"reward": outcome.reward, "done": True})
                    episode.messages += [{"role": "tool", "content": outcome.observation}]
                    return self._answer(200, {"reward": None, "done": False, "observation": outcome.observation})
                return self._answer(404, {"error": f"no route {self.path}"})
            except Exception as e:  # noqa: BLE001 (the environment's fault: the client retries, then loses the sample)
                return self._answer(500, {"error": f"{type(e).__name__}: {e}"})

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m factory.envs.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="the environment's settings as JSON (EnvironmentConfig)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    env = open_environment(EnvironmentConfig.model_validate_json(args.env))
    server = make_server(env, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        env.close()


if __name__ == "__main__":
    sys.exit(main())
