"""The SFT stage (Llama-Nemotron): supervised fine-tuning on verified conversations, loss on assistant tokens only."""

from factory.lazy import lazy_exports
from factory.stages.sft.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.sft.stage"})

__all__ = ["Config", "run"]
