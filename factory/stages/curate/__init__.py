"""The curate stage: raw web pages in, clean deduplicated, quality-tiered English text out (Nemotron-CC style)."""

from factory.lazy import lazy_exports
from factory.stages.curate.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.curate.stage"})

__all__ = ["Config", "run"]
