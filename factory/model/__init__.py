"""Model presets built on transformers' `NemotronHForCausalLM`: hybrid Mamba-2 / attention / MLP / MoE."""

from factory.model.config import LAYER_TYPES, ModelConfig
from factory.model.presets import PRESETS, PUBLISHED, ModelSpec, Published


def __getattr__(name: str):
    # build_model needs torch and transformers; loading them lazily keeps `import factory.spec` (every
    # pipeline step, even one that only reuses an artifact) free of their import time.
    if name in ("build_model", "count_parameters"):
        from factory.model import build

        return getattr(build, name)
    raise AttributeError(f"module 'factory.model' has no attribute {name!r}")

__all__ = ["LAYER_TYPES", "PRESETS", "PUBLISHED", "ModelConfig", "ModelSpec", "Published", "build_model", "count_parameters"]
