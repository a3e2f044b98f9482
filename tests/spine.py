"""Shared test helpers: a small but complete spec for spine tests (every real stage, sized to run in
seconds on CPU), the records of a corpus artifact, a free loopback port, waiting for a server, and a real
`transformers serve` process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from factory.documents import document_files, read_records

ROOT = Path(__file__).resolve().parent.parent
SMOKE_HTML = ROOT / "examples" / "data" / "smoke-html"


def small_corpus(dest: Path, n: int = 60) -> Path:
    """The first `n` smoke pages (sorted, so every run picks the same ones), plus the WARC file."""
    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in SMOKE_HTML.iterdir() if p.suffix in (".html", ".htm"))[:n]
    files += sorted(p for p in SMOKE_HTML.iterdir() if p.name.endswith((".warc", ".warc.gz")))
    for f in files:
        shutil.copy(f, dest / f.name)
    return dest


def small_spec_data(tmp: Path, **stage_updates: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "spine",
        "work_dir": str(tmp / "work"),
        "storage": {"root": str(tmp / "store")},
        "model": {"preset": "tiny"},
        "stages": {
            "curate": {"sources": [str(tmp / "html")]},
            "tokenize": {"vocab_size": 512},
            "pretrain": {"seq_len": 64, "micro_batch_size": 4, "steps": 12, "warmup_steps": 2, "checkpoint_interval": 4, "log_interval": 4},
            "evaluate": {"seq_len": 64, "batch_size": 4, "max_batches": 2, "max_new_tokens": 8, "prompts": ["The module"]},
            "release": {"model_name": "spine-tiny"},
        },
    }
    for stage, update in stage_updates.items():
        data["stages"][stage] = {**data["stages"][stage], **update}
    return data


def write_spec(tmp: Path, **stage_updates: dict[str, Any]) -> Path:
    if not (tmp / "html").exists():
        small_corpus(tmp / "html")
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(small_spec_data(tmp, **stage_updates)))
    return path


def corpus_records(artifact_dir: Path) -> list[dict]:
    """Every record of a corpus artifact (`documents/part-*.jsonl.gz`); a damaged line or file fails the test."""
    skipped: Counter = Counter()
    records = list(read_records(document_files(artifact_dir), skipped))
    assert not skipped, f"{artifact_dir}: damaged corpus {dict(skipped)}"
    return records


def free_port() -> int:
    """A loopback port that was free a moment ago (and has no listener now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float) -> bool:
    """Poll `url`/health until it answers 200 (True); False once `proc` exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.5)


@contextmanager
def transformers_serve(model_dir: str | Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`transformers serve MODEL_DIR *extra` (offline) on a free loopback port until the block ends; yields its URL.
    Its output goes to `log`, which the failure message quotes when it does not come up."""
    import os
    import sys

    url = f"http://127.0.0.1:{free_port()}"
    cli = Path(sys.executable).parent / "transformers"
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(cli), "serve", str(model_dir), "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
                                 *extra], stdout=fh, stderr=subprocess.STDOUT,
                                env={**(env or os.environ), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        assert wait_healthy(url, proc, timeout_s=180), f"transformers serve did not come up: {log.read_text()[-2000:]}"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

