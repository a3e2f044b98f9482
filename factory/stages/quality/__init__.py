"""The quality stage: train the Nemotron-CC quality-classifier ensemble as its own versioned artifact."""

from factory.lazy import lazy_exports
from factory.stages.quality.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.quality.stage"})

__all__ = ["Config", "run"]
