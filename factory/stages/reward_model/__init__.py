"""The reward_model stage: a regression head on a base checkpoint's final token, trained to predict HelpSteer-style
attribute scores (helpfulness, correctness, coherence, complexity, verbosity; 0-4), as SteerLM / Nemotron-4 340B's
reward model. The preference stage (`judge: reward_model`) scores its samples with it."""

from factory.lazy import lazy_exports
from factory.stages.reward_model.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.reward_model.stage"})

__all__ = ["Config", "run"]
