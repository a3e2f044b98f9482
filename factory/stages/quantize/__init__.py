"""Post-training quantization (FP8, NVFP4, mixed precision); Model Optimizer's HF export and compressed-tensors."""

from factory.lazy import lazy_exports
from factory.stages.quantize.config import Config

# `run` imports the stage's heavy libraries; loading a spec reads only `Config`.
__getattr__ = lazy_exports(__name__, {"run": "factory.stages.quantize.stage"})

__all__ = ["Config", "run"]
