"""Megatron-Core as a training engine (`pretrain.engine: megatron`).

As data, tested on CPU without building a model: the model spec, precision and parallel layout as Megatron-Core /
Megatron-Bridge arguments (`model_args`, `precision_args`, `parallel_args`) and the Megatron <-> Hugging Face
state-dict adapter (`state_dict`). Training: `engine` (Megatron-Core's `MambaModel` through the training-stage
shell: parallel state, Megatron DDP, distributed checkpoints, the Hugging Face export) and `cpu` (why and how
Megatron-Core runs on a CPU: the one module that replaces its CUDA-only parts).
"""

from factory.lazy import lazy_exports

# `engine` and `cpu` import megatron-core and torch (seconds); a spec load reads `model_args` and `precision_args`
# only, through the pretrain config, so every name loads its module on first use.
_LAZY = {
    "megatron_cli_args": "model_args", "megatron_model_args": "model_args", "model_config_of": "model_args",
    "megatron_parallel_args": "parallel_args", "te_recipe": "precision_args", "MegatronAdapter": "state_dict",
    "MegatronEngine": "engine", "MegatronCausalLM": "engine",
}

__getattr__ = lazy_exports(__name__, {name: f"factory.engines.megatron.{module}" for name, module in _LAZY.items()})

__all__ = sorted(_LAZY)
