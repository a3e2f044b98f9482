"""Model presets built on transformers' `NemotronHForCausalLM`: hybrid Mamba-2 / attention / MLP / MoE."""

from factory.model.build import build_model, count_parameters
from factory.model.config import LAYER_TYPES, ModelConfig
from factory.model.presets import PRESETS, PUBLISHED, ModelSpec, Published

__all__ = ["LAYER_TYPES", "PRESETS", "PUBLISHED", "ModelConfig", "ModelSpec", "Published", "build_model", "count_parameters"]
