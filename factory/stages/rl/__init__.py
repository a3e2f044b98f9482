"""The rl stage: GRPO with verifiable rewards (AceReason 1.0/1.1, DAPO, NeMo-RL), on the factory's trainer."""

from factory.lazy import lazy_exports
from factory.stages.rl.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.rl.stage"})

__all__ = ["Config", "run"]
