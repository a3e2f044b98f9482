"""Minitron compression of NemotronH models and dense transformers (Llama, Qwen2, Qwen3, Mistral): activation importance,
width/depth surgery, budget search."""

from factory.lazy import lazy_exports
from factory.stages.compress.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.compress.stage"})

__all__ = ["Config", "run"]
