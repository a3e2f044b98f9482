"""The pretrain stage: train a hybrid Mamba-2 / attention model from scratch on packed token windows."""

from factory.lazy import lazy_exports
from factory.stages.pretrain.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.pretrain.stage"})

__all__ = ["Config", "run"]
