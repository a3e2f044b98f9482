"""The opd stage: on-policy distillation from one teacher (Thinking Machines; Nemotron 3 Ultra's MOPD, one teacher):
the student samples, the teacher scores the student's tokens, the loss is per-token reverse KL."""

from factory.lazy import lazy_exports
from factory.stages.opd.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.opd.stage"})

__all__ = ["Config", "run"]
