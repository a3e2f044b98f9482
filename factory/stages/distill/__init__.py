"""The distill stage: logit distillation of a (pruned) student from its unpruned teacher (Minitron)."""

from factory.lazy import lazy_exports
from factory.stages.distill.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.distill.stage"})

__all__ = ["Config", "run"]
