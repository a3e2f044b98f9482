"""The preference stage: DPO or RPO (Nemotron-4 340B) on pairs from the policy's own samples."""

from factory.lazy import lazy_exports
from factory.stages.preference.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.preference.stage"})

__all__ = ["Config", "run"]
