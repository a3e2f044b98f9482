"""Structured logging and progress.

JSON lines when the output is not a terminal (CI, KFP pods), readable key-value lines on a terminal.
Long loops use `progress()`: a rich progress bar on a terminal, a `progress` event every few seconds
otherwise, so a pod's log still shows the loop advancing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import structlog

T = TypeVar("T")
_configured = False


def interactive() -> bool:
    return sys.stderr.isatty()


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(json: bool | None = None, level: str = "INFO") -> None:
    """Configure structlog once; `json=None` picks JSON lines unless stderr is a terminal."""
    global _configured
    use_json = (not interactive()) if json is None else json
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors.append(
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        # the stream is looked up at each write: a logger bound to the sys.stderr of the moment would keep writing
        # into a stream a caller has since replaced and closed (click's CliRunner, pytest's capsys)
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str | None = None, **bound) -> structlog.stdlib.BoundLogger:
    if not _configured:
        configure()
    log = structlog.get_logger(name)
    return log.bind(**bound) if bound else log


def progress(items: Iterable[T], total: int | None = None, desc: str = "working", every_s: float = 5.0) -> Iterator[T]:
    """Yield `items`, showing progress: a bar on a terminal, a log event every `every_s` seconds otherwise."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if interactive():
        from rich.progress import Progress  # only on a terminal; every module imports this one

        with Progress(transient=True) as bar:
            task = bar.add_task(desc, total=total)
            for item in items:
                yield item
                bar.advance(task)
        return
    log = get_logger("progress")
    last = start = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            log.info("progress", task=desc, done=done, total=total, elapsed_s=round(now - start, 1))
            last = now
